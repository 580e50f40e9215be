"""Virtual keys: tenant API keys kept as data in the store, managed at runtime (issue 20).

model     the key record, secrets, and validation of admin input (pure)
store     the KeyStore protocol; memory / sqlite / redis hold the records, the audit trail
          and per-key usage aggregates, each in tables or keys of their own
cache     digest -> key, held at most 1 s, so a revocation reaches every instance in time
service   create / update / rotate / revoke with their audit rows (admin API and CLI)
"""
