{#-
  Lifecycle stage of one person as of a date (docs/models.md, "Lifecycle"). The arguments are SQL expressions:
  the first and last paid order times known on that date (NULL when none) and the date itself. Windows are the
  project vars lifecycle_new_days / lifecycle_active_days / lifecycle_churn_days, counted in whole days.
-#}
{% macro lifecycle_stage(first_order_at, last_order_at, as_of) -%}
    case
        when {{ first_order_at }} is null then 'prospect'
        when date_diff('day', cast({{ first_order_at }} as date), {{ as_of }}) < {{ var('lifecycle_new_days') }} then 'new'
        when date_diff('day', cast({{ last_order_at }} as date), {{ as_of }}) < {{ var('lifecycle_active_days') }} then 'active'
        when date_diff('day', cast({{ last_order_at }} as date), {{ as_of }}) < {{ var('lifecycle_churn_days') }} then 'silent'
        else 'churned'
    end
{%- endmacro %}

{#- Stages in their natural order, for accepted_values tests. -#}
{% macro lifecycle_stages() -%}
    {{ return(['prospect', 'new', 'active', 'silent', 'churned']) }}
{%- endmacro %}
