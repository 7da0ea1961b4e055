"""Migration 0003 reads a channel stored with one key as a channel of that one key, both ways."""

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor

from relay.crypto import encrypt_secret
from relay.models import Channel
from relay.selectors import channel_routes_enabled

BEFORE = [("relay", "0002_alter_channel_options_alter_channel_api_key_last4_and_more")]
AFTER = [("relay", "0003_channel_keys_overrides")]
KEY = "sk-stored-before-several-keys-4321"


def _migrate(target) -> None:
    executor = MigrationExecutor(connection)
    executor.loader.build_graph()
    executor.migrate(target)


def _migrate_to_latest() -> None:
    executor = MigrationExecutor(connection)
    _migrate(executor.loader.graph.leaf_nodes("relay"))


@pytest.mark.django_db(transaction=True)
def test_0003_moves_the_last_four_characters_into_the_endings_and_back():
    try:
        # Given channels stored before 0003: one with a key, one (the mock) without
        _migrate(BEFORE)
        with connection.cursor() as cursor:
            for name, kind, base_url, secret, last4 in [
                ("old", "openai", "https://up.example/v1", encrypt_secret(KEY), KEY[-4:]),
                ("mock", "mock", "", "", ""),
            ]:
                cursor.execute(
                    "INSERT INTO relay_channel (name, kind, base_url, encrypted_api_key,"
                    " api_key_last4, served_models, model_mapping, priority, weight,"
                    " connect_timeout_seconds, read_timeout_seconds, status,"
                    " consecutive_failures, total_failures, last_error, created_at, updated_at)"
                    " VALUES (%s, %s, %s, %s, %s, '[\"m\"]', '{}', 0, 1, 5, 300, 'enabled',"
                    " 0, 0, '', now(), now())",
                    [name, kind, base_url, secret, last4],
                )

        # When 0003 runs
        _migrate(AFTER)
        _migrate_to_latest()

        # Then the stored key is the channel's one key, named by its ending
        endings = dict(Channel.objects.values_list("name", "api_key_endings"))
        assert endings == {"old": ["4321"], "mock": []}
        routes = {route.name: route for route in channel_routes_enabled()}
        assert routes["old"].api_keys == (KEY,)
        assert routes["old"].api_key == KEY
        assert Channel.objects.get(name="old").header_overrides == {}

        # And back: the ending is the last four characters again
        _migrate(BEFORE)
        with connection.cursor() as cursor:
            cursor.execute("SELECT name, api_key_last4 FROM relay_channel ORDER BY name")
            assert cursor.fetchall() == [("mock", ""), ("old", "4321")]
    finally:
        _migrate_to_latest()
