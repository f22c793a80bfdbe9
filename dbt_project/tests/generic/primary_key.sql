{#-
  unique + not_null in one pass. On a staging view every test computes the view again (its
  deduplicating window and its record_map join), so a key checked as two tests costs two
  evaluations; this costs one. Failing rows: each duplicated key with its count, and NULL keys.
-#}
{% test primary_key(model, column_name) %}

select
    {{ column_name }},
    count(*) as n_rows
from {{ model }}
group by {{ column_name }}
having {{ column_name }} is null or count(*) > 1

{% endtest %}
