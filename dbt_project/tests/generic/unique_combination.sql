{#-
  dbt's built-in unique test takes one column; composite natural keys (platform + order_id,
  appid + openid) need the combination checked without inventing a surrogate column.
-#}
{% test unique_combination(model, combination_of_columns) %}

select
    {{ combination_of_columns | join(', ') }},
    count(*) as n_rows
from {{ model }}
group by {{ combination_of_columns | join(', ') }}
having count(*) > 1

{% endtest %}
