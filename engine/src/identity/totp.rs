//! TOTP second factor (RFC 6238) and recovery codes.
