"""Entities: the keys features hang on (ids are strings; user ids are pseudonymised)."""

from feast import Entity, ValueType

user = Entity(
    name="user",
    join_keys=["user_id"],
    value_type=ValueType.STRING,
    description="A viewer (keyed-HMAC pseudonym assigned at ingestion).",
)

content = Entity(
    name="content",
    join_keys=["content_id"],
    value_type=ValueType.STRING,
    description="A short video.",
)

creator = Entity(
    name="creator",
    join_keys=["creator_id"],
    value_type=ValueType.STRING,
    description="The account that uploaded a video.",
)
