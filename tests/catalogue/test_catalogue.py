"""The scenario catalogue (issue 8): a suggestion must never break the code.

Every scenario runs under ``profile()`` on a freshly seeded database; each
suggestion made for a query of the scenario's file is applied exactly as given
and the scenario re-run: same output, same database, no new exception, or the
suggestion is a bug. ``KNOWN_BROKEN`` lists the scenarios the engine gets wrong
today (strict xfail: one that starts passing must be taken off the list); a
``name@postgresql`` key applies to one backend only.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from . import scenarios_classic, scenarios_object, scenarios_shapes, scenarios_writes
from .harness import RESULTS, Backend, Scenario, check

KNOWN_BROKEN: dict[str, str] = {
    # columns suggested, but the code uses behaviour a Row lacks (methods/properties that read no
    # column, decorated or delegating methods, composites, subclass methods)
    "method_kind_direct": ".with_entities(User.name) -> AttributeError: kind",
    "property_css_class_direct": ".with_entities(User.name) -> AttributeError: css_class",
    "method_kind_select_style": "select(User.email) -> AttributeError: kind",
    "jinja_calls_method": (
        ".with_entities(User.name) -> UndefinedError: 'Row object' has no attribute 'k"
    ),
    "jinja_reads_property": (
        ".with_entities(User.name) -> output: '<li class=\"user-row\">user01</li><li became '<li cl"
    ),
    "jinja_undefined_is_silent": (
        ".with_entities(User.name) -> output: 'user01* user02* user03* user04 became 'user01 user02"
    ),
    "jinja_attr_filter": (
        ".with_entities(User.city) -> output: 'Oslo/True Lima/True Kyoto/Tru became 'Oslo/False Lim"
    ),
    "marshmallow_method_field": ".with_entities(User.name) -> AttributeError: kind",
    "marshmallow_function_field_property": (
        ".with_entities(User.email) -> AttributeError: css_class"
    ),
    "marshmallow_attribute_property": (
        ".with_entities(User.name) -> output: e': 'user01', 'css': 'user-row'}, {' became e': 'user"
    ),
    "serializer_method_field_dict": ".with_entities(User.id, User.name) -> AttributeError: kind",
    "wraps_decorated_method_no_reads": ".with_entities(User.email) -> AttributeError: badge",
    "method_delegates_to_helper_reads": (
        ".with_entities(User.name, User.email) -> AttributeError: label"
    ),
    "method_delegates_to_helper_no_reads": ".with_entities(User.city) -> AttributeError: flavour",
    "hasattr_duck_typing": (
        ".with_entities(User.name) -> output: [('user01', True), ('user02', True), became [('user01"
    ),
    "composite_attribute": ".with_entities(Shape.label) -> AttributeError: start",
    "composite_equality": "select(Shape.label) -> AttributeError: start",
    "staff_title_method_polymorphic_subclass": (
        ".with_entities(Manager.name) -> AttributeError: title"
    ),
    "polymorphic_base_subclass_method": ".with_entities(Manager.name) -> AttributeError: title",
    "fsa_member_method": ".with_entities(Member.username) -> AttributeError: kind",
    # columns suggested, but the code prints the instance (repr/str/format/logging)
    "repr_default": (
        ".with_entities(User.name) -> output: ['user01: <tests.catalogu became [\"user01: ('user01'"
    ),
    "jinja_prints_instance": (
        ".with_entities(User.name) -> output: 'user01 <tests.catalogue became \"user01 ('user01',)|"
    ),
    "fstring_instance": (
        ".with_entities(User.city) -> output: ['<tests.catalogue.models became [\"('Oslo',) lives i"
    ),
    "str_format_instance": (
        ".with_entities(User.email) -> output: ['<tests.catalogue.models became [\"('user01@example"
    ),
    "logging_instance": (
        ".with_entities(User.score) -> output: ['user < became ['user (42,) scored 42', 'user"
    ),
    "fsa_member_repr": (
        ".with_entities(Member.email) -> output: ['<Member 1>m1@example.or became [\"('m1@example.o"
    ),
    # columns suggested, but the code relies on the instance's identity or type (hash, ==, in,
    # isinstance, type(), JSON encoder, weakref, copy, dataclasses)
    "hash_dict_keyed_by_instance": ".with_entities(User.name) -> KeyError: <User object at 0x?>",
    "hash_dict_fromkeys": (
        ".with_entities(User.name) -> output: ['user01', 'user02', 'use became []"
    ),
    "hash_set_of_instances": (
        ".with_entities(User.email) -> output: ['user01@example.com', 'u became []"
    ),
    "eq_against_current_user": (
        ".with_entities(User.name) -> output:  ('user07', True), ('user11', False) became  ('user07"
    ),
    "in_membership_check": (
        ".with_entities(User.name) -> output: (True, ['user02', 'user03 became (False, ['user02', '"
    ),
    "isinstance_filter": ".with_entities(User.name) -> output: ['user01', 'user02', 'use became []",
    "type_name_label": (
        ".with_entities(User.name) -> output: ['User:user01', 'User:user became ['Row:user01', 'Row"
    ),
    "json_encoder_checks_class": (
        ".with_entities(User.name, User.email) -> TypeError: Object of type Row is not JSON seriali"
    ),
    "weakref_cache": (
        ".with_entities(User.name) -> TypeError: cannot create weak reference to 'Row' object"
    ),
    "copy_instance_attributes": (
        ".with_entities(User.name) -> output: ('User', ['user01', 'user0 became ('Row', ['user01',"
    ),
    "dataclass_fields": (
        ".with_entities(Book.title) -> TypeError: must be called with a dataclass type or instance"
    ),
    "dataclass_is_dataclass_check": (
        "select(Book.title) -> output: [('book 1', True), ('book 2', True), became [('book 1', Fals"
    ),
    # columns suggested, but the code needs a mapped instance (plain attributes, session APIs,
    # relationships, inspect, __table__/__mapper__/__dict__, writes, refreshed state)
    "plain_attribute_rank": ".with_entities(User.name) -> AttributeError: can't set attribute",
    "setattr_annotation": (
        ".with_entities(User.name, User.score) -> AttributeError: can't set attribute"
    ),
    "session_expunge": (
        ".with_entities(User.name) -> UnmappedInstanceError: Class 'Row' is not mapped"
    ),
    "session_refresh": (
        ".with_entities(User.name) -> UnmappedInstanceError: Class 'Row' is not mapped"
    ),
    "object_session_check": (
        ".with_entities(User.name) -> UnmappedInstanceError: Class 'Row' is not mapped"
    ),
    "relationship_comparison_filter": (
        ".with_entities(User.name) -> ArgumentError: Mapped instance expected for relationship comp"
    ),
    "with_parent_filter": (
        ".with_entities(User.email) -> ArgumentError: Mapped instance expected for relationship com"
    ),
    "inspect_mapper": (
        ".with_entities(User.name) -> NoInspectionAvailable: No inspection system is available for"
    ),
    "inspect_identity": (
        ".with_entities(User.email) -> NoInspectionAvailable: No inspection system is available for"
    ),
    "table_columns_of_instance": ".with_entities(User.name) -> AttributeError: __table__",
    "type_mapper_of_instance": (
        ".with_entities(User.city) -> AttributeError: type object 'Row' has no attribute '__mapper_"
    ),
    "instance_dict": ".with_entities(User.name) -> AttributeError: __dict__",
    "vars_of_instance": (
        ".with_entities(User.name) -> TypeError: vars() argument must have __dict__ attribute"
    ),
    "session_add_after_change": (
        ".with_entities(User.email) -> UnmappedInstanceError: Class 'Row' is not mappe"
    ),
    "create_post_for_author": ".with_entities(User.name) -> AttributeError: _sa_instance_state",
    "reassign_relationship": ".with_entities(User.email) -> AttributeError: _sa_instance_state",
    "flag_modified_commit": (
        ".with_entities(User.city, User.prefs) -> AttributeError: _sa_instance_state"
    ),
    "mutable_dict_change_commit": (
        ".with_entities(User.name, User.prefs) -> database: tables differ: qmc_user"
    ),
    "read_after_commit_expiry": (
        ".with_entities(User.name) -> output: ['renamed', 'user02', 'use became ['user01', 'user02'"
    ),
    "bulk_update_then_read_loaded": (
        ".with_entities(User.city) -> output: ['Rome', 'Rome', 'Rome', ' became ['Oslo', 'Lima', 'K"
    ),
    # one line, many callers: the suggestion fits one caller and breaks another
    "helper_two_consumers_method": ".with_entities(User.name) -> AttributeError: kind",
    "helper_two_consumers_template_and_serializer": (
        ".with_entities(User.name) -> AttributeError: css_class"
    ),
    "helper_two_consumers_hashing": (
        ".with_entities(User.name) -> output: 'user28'], [5, 6, 7, 8, 9, 10, 11, 1 became 'user28']"
    ),
    "helper_loop_many_calls": (
        ".with_entities(Post.title) -> output: , 'repr': ['Post', 'Post']} became , 'repr': ['Row',"
    ),
    # query shape the projection does not preserve (joins that multiply rows, distinct,
    # aliased/subquery/CTE/union entities, with_expression, scalar(), rows of entities, Row-member
    # column names)
    "join_multiplies_rows_legacy": (
        ".with_entities(User.name) -> output: r02', 'user03', 'user05', 'user06',  became r02', 'us"
    ),
    "join_multiplies_rows_count": (
        ".with_entities(User.email) -> output: (30, ['user01@example.com became (60, ['user01@examp"
    ),
    "select_from_post_join_author": (
        ".with_entities(User.city) -> output: ['Oslo', 'Lima', 'Kyoto', 'Oslo',  became ['Oslo', 'O"
    ),
    "distinct_on_entity_reads_city": (
        ".with_entities(User.city) -> output: ['Kyoto', 'Kyoto', 'Kyoto', 'Kyoto' became ['Kyoto',"
    ),
    "distinct_join_reads_name@postgresql": (
        ".with_entities(User.name) -> ProgrammingError: (psycopg2.errors.InvalidColumnReference) fo"
    ),
    "distinct_order_by_unselected@postgresql": (
        ".with_entities(User.name) -> ProgrammingError: (psycopg2.errors.InvalidColumnReference) fo"
    ),
    "distinct_select_style_order_by_unselected@postgresql": (
        "select(User.email) -> ProgrammingError: (psycopg2.errors.InvalidColumnReference) for SELEC"
    ),
    "aliased_entity_columns": (
        ".with_entities(User.name) -> SAWarning: SELECT statement has a cartesian product between F"
    ),
    "aliased_entity_property": (
        ".options(load_only(User.id, User.name, User.city)) -> ArgumentError: Mapped class User ref"
    ),
    "subquery_entity": (
        ".with_entities(User.name) -> OperationalError: (sqlite3.OperationalError) no such column:"
    ),
    "cte_entity": (
        ".with_entities(User.email) -> OperationalError: (sqlite3.OperationalError) no such column:"
    ),
    "with_expression_value": (
        ".with_entities(User.rank_expr, User.name) -> output: [('user01', 14), ('user02', 28), ('u"
    ),
    "query_scalar_on_entity": (
        ".with_entities(User.name) -> AttributeError: 'str' object has no attribute 'name'"
    ),
    "execute_select_row_entity": "select(User.name) -> AttributeError: User",
    "execute_select_unpack_tuple": (
        "select(User.email) -> AttributeError: 'str' object has no attribute 'email'"
    ),
    "execute_select_row_index": (
        "select(User.city) -> AttributeError: 'str' object has no attribute 'city'"
    ),
    "execute_select_mappings": "select(User.name) -> KeyError: 'User'",
    "row_member_t": (
        "select(Gadget.t) -> SADeprecationWarning: The Row.t attribute is deprecated in favor of Ro"
    ),
    "row_member_tuple": (
        ".with_entities(Gadget.tuple) -> output: ['tup1', 'tup2', 'tup3',  became [<bound method Ro"
    ),
    "row_member_mapping": (
        ".with_entities(Gadget._mapping) -> output: ['map1', 'map2', 'map3',  became [{'_mapping':"
    ),
    "row_member_fields": (
        ".with_entities(Gadget.name, Gadget._fields) -> output: ('gadget1', 'fld1'), ('gadget2', 'f"
    ),
    # unpasteable: a select(...) suggestion for a statement not written on the reported line, or
    # for an aliased entity
    "select_statement_built_earlier": (
        "select(User.name) -> unpasteable: select(User) found 0 times on lines 11-11"
    ),
    "join_select_style_not_uniqued": (
        "select(User.name) -> unpasteable: select(User) found 0 times on lines 11-11"
    ),
    "aliased_select_style": (
        "select(User.email) -> unpasteable: select(User) found 0 times on lines 13-13"
    ),
    "union_all_select_entity": (
        "select(User.name) -> unpasteable: select(User) found 0 times on lines 15-15"
    ),
}

SCENARIOS: list[Scenario] = [
    *scenarios_classic.SCENARIOS,
    *scenarios_object.SCENARIOS,
    *scenarios_shapes.SCENARIOS,
    *scenarios_writes.SCENARIOS,
]


def test_catalogue_is_complete() -> None:
    names = [sc.name for sc in SCENARIOS]
    assert len(names) == len(set(names)), "scenario names must be unique"
    assert len(SCENARIOS) >= 100
    assert sum(sc.expect_suggestion for sc in SCENARIOS) >= 10
    stale = {key.split("@")[0] for key in KNOWN_BROKEN} - set(names)
    assert not stale, f"KNOWN_BROKEN names no scenario: {sorted(stale)}"


@pytest.mark.parametrize("sc", SCENARIOS, ids=[sc.name for sc in SCENARIOS])
def test_scenario(
    sc: Scenario, backend: Backend, scenario_dir: Path, request: pytest.FixtureRequest
) -> None:
    reason = KNOWN_BROKEN.get(f"{sc.name}@{backend.dialect}") or KNOWN_BROKEN.get(sc.name)
    if reason:
        request.applymarker(pytest.mark.xfail(strict=True, reason=reason))
    result = check(backend, sc, scenario_dir)
    RESULTS[sc.name] = result
    assert result.original.output not in (None, "", [], {}, set(), ()), "scenario produced nothing"
    assert not result.bad, "\n".join(str(tr) for tr in result.bad)
    if sc.expect_suggestion:
        assert result.suggestions, (
            "this safe case lost its suggestion:\n" + result.original.report.to_text()
        )
