{#-
  not_null on several columns in one pass. Each test on a staging view computes the view again
  (its deduplicating window and its record_map join: about 3 s at 6M rows), so a view with five
  required columns checks them in one evaluation, not five. A failing row says which are NULL.
-#}
{% test not_null_columns(model, columns) %}

select
    {% for column in columns -%}
    {{ column }} is null as {{ column }}_is_null{{ "," if not loop.last }}
    {% endfor %}
from {{ model }}
where
    {% for column in columns -%}
    {{ column }} is null{{ " or" if not loop.last }}
    {% endfor %}

{% endtest %}
