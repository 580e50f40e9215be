"""The reverse bridge, for `openai` channels with `api: responses`: chat requests become
Responses requests, and Responses answers (a Response, or its event stream) become chat."""
from .request import ResponsesRequest, chat_param, to_responses
from .response import to_completion
from .stream import ChatFromResponses, ResponsesSSEConverter

__all__ = ["ChatFromResponses", "ResponsesRequest", "ResponsesSSEConverter", "chat_param", "to_completion", "to_responses"]
