{#-
  Raw tables are append-only: every re-export of an entity is another row. "Latest" means loaded
  last; within one load the file name breaks the tie (exports are usually named by date and ingest
  stamps a whole run with one _loaded_at), then the row position inside the file. Every staging
  model uses this one ordering so "latest" means the same thing for every source.
-#}
{% macro export_recency_order() -%}
    _loaded_at desc, _source_file desc, _row_number desc
{%- endmacro %}
