//! Passwords: argon2id hashing and the strength policy.
