{#-
  Row-level invariants (net never negative, never above paid) that no built-in test expresses.
  A NULL result passes, as in SQL CHECK constraints; pair with not_null where NULL is wrong.
-#}
{% test expression_is_true(model, expression) %}

select *
from {{ model }}
where not ({{ expression }})

{% endtest %}
