//! Tests against the Redis server on 127.0.0.1:6379.
