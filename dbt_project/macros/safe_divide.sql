{#-
  A ratio as DOUBLE, NULL when the denominator is 0 or NULL: the funnels' zero-denominator rule
  (docs/models.md, "GMV funnel"). Never 0 and never an error, so a missing factor cannot pass as a real one.
-#}
{% macro safe_divide(numerator, denominator) -%}
    (cast({{ numerator }} as double) / nullif(cast({{ denominator }} as double), 0))
{%- endmacro %}
