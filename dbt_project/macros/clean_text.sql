{#-
  Exports write "no value" as an empty string in CSVs and as a missing key in JSON; staging turns
  both into NULL so that coalesce / count / not_null behave the same for every source.
-#}
{% macro clean_text(column) -%}
    nullif(trim({{ column }}), '')
{%- endmacro %}
