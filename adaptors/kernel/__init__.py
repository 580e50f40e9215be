"""The kernel every channel shares: the adaptor contract (base, registry), errors, the canonical
chat format (chat, chunks, accumulate, usage, content, tokens, ids), SSE, the HTTP plumbing and
its deadlines, redaction. Channel drivers live beside it (one folder per type), and so do the
client-facing bridges (responses/, messages/); nothing here imports them."""
