{#-
  The GMV funnel factors (docs/models.md, "GMV funnel") from the counts a funnel row already has:
  organic_users, users, buyers, paid_orders, net_gmv.

      net_gmv = organic_users x referral_multiplier x conversion_rate x order_frequency x average_order_value

  referral_multiplier = users / organic_users, conversion_rate = buyers / users,
  order_frequency = paid_orders / buyers, average_order_value = net_gmv / paid_orders; each factor is NULL
  when its denominator is 0 (safe_divide), factors_defined says whether all of them are defined, and
  gmv_from_factors is their product (NULL unless factors_defined). ltv_per_buyer = net_gmv / buyers
  (= order_frequency x average_order_value).
-#}
{% macro gmv_funnel_factors() -%}
    {{ safe_divide('users', 'organic_users') }} as referral_multiplier,
    {{ safe_divide('buyers', 'users') }} as conversion_rate,
    {{ safe_divide('paid_orders', 'buyers') }} as order_frequency,
    {{ safe_divide('net_gmv', 'paid_orders') }} as average_order_value,
    {{ safe_divide('net_gmv', 'buyers') }} as ltv_per_buyer,
    organic_users > 0 and users > 0 and buyers > 0 and paid_orders > 0 as factors_defined,
    case
        when organic_users > 0 and users > 0 and buyers > 0 and paid_orders > 0 then
            cast(organic_users as double)
            * {{ safe_divide('users', 'organic_users') }}
            * {{ safe_divide('buyers', 'users') }}
            * {{ safe_divide('paid_orders', 'buyers') }}
            * {{ safe_divide('net_gmv', 'paid_orders') }}
    end as gmv_from_factors
{%- endmacro %}
