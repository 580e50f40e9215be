"""The Messages bridge: Anthropic Messages requests onto chat, chat answers back into Messages."""
from .count import count_body, estimate_input_tokens, prompt_messages
from .errors import error_body, error_type
from .models import model_info, model_page
from .request import MessagesConversion, to_chat, validate_request
from .response import completion_to_message
from .stream import MessagesStream

__all__ = ["MessagesConversion", "MessagesStream", "completion_to_message", "count_body", "error_body", "error_type",
           "estimate_input_tokens", "model_info", "model_page", "prompt_messages", "to_chat", "validate_request"]
