{#- Renders a list var as a SQL IN-list, so status lists live once in dbt_project.yml. -#}
{% macro sql_list(values) -%}
    ({% for value in values %}'{{ value }}'{% if not loop.last %}, {% endif %}{% endfor %})
{%- endmacro %}
