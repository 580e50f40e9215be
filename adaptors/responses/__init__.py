"""The Responses bridge: Responses requests onto chat, chat answers back into Responses."""
from .complete import completion_to_response
from .envelope import Envelope
from .request import REASONING_KEY, ChatConversion, to_chat
from .stream import ResponsesStream
from .validate import validate_responses_request

__all__ = ["ChatConversion", "Envelope", "REASONING_KEY", "ResponsesStream", "completion_to_response", "to_chat",
           "validate_responses_request"]
