"""A local XMTP node for tests: libxmtp's v3 IdentityApi and MlsApi, store and relay only,
durable in SQLite, with the attachment upload stand-in. See README.md beside this file."""
