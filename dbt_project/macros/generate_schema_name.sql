{#-
  dbt's default prefixes custom schemas with the target schema (main_staging). Downstream tools and
  the docs name the schemas staging / intermediate / marts, so a configured schema is used verbatim.
-#}
{% macro generate_schema_name(custom_schema_name, node) -%}
    {%- if custom_schema_name is none -%}
        {{ target.schema }}
    {%- else -%}
        {{ custom_schema_name | trim }}
    {%- endif -%}
{%- endmacro %}
