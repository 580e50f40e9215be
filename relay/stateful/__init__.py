"""Stateful Responses: stored responses, chains by `previous_response_id`, background
responses and conversations, kept per tenant in the usage store's documents.

Every channel sees a stateless request: `chain.prepare` turns the stored state a request
names into its `input` (the chain's items, then the request's own), so a chat-only, Claude
or CLI upstream answers a continued conversation as OpenAI would.
"""
