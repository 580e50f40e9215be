"""Virtual keys: tenant API keys kept as data in the store, managed at runtime (issue 20).

model       the key record, its secret, validation of operator input (pure)
store       the KeyStore protocol and the write-behind queue; memory / sqlite / redis hold
            the records, the digest index, the audit trail and per-key usage, each in tables
            or Redis keys of their own beside the usage store's
cache       digest -> key, held at most 1 s, so a change reaches every instance in time
middleware  resolves a presented `sk-relay-` key before the handler (relay.auth then finds it)
limits      the key's counters added to the tenant's admission plan; its model allowlist
service     create / update / rotate / revoke with their audit rows (admin API and CLI)
admin_api   /admin/keys on the ops listener;  cli: `relay keys ...`
wiring      puts it all into the app; a key both in the YAML and the store stops start/reload
"""
