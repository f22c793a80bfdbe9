{#-
  The province-level division an address (or a province field) starts with, as its short name: 浙江省杭州市…
  and "浙江省 杭州市 …" give 浙江, 上海市浦东… gives 上海, 广西壮族自治区… gives 广西, a bare 浙江 stays 浙江.
  Everything after the province (city, street, number) is dropped here, in staging, so that no model past
  staging carries an address. Whether the token is a real province is decided against the `provinces` seed.
-#}
{% macro province_from_address(column) -%}
    nullif(
        coalesce(
            nullif(regexp_extract(
                replace(replace(trim({{ column }}), ' ', ''), '　', ''),
                '^(.{2,3}?)(省|市|壮族自治区|回族自治区|维吾尔自治区|自治区|特别行政区)', 1
            ), ''),
            case
                when length(replace(trim({{ column }}), ' ', '')) between 2 and 3
                    then replace(trim({{ column }}), ' ', '')
            end
        ),
        ''
    )
{%- endmacro %}
