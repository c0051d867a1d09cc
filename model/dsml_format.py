"""The fixed text of DeepSeek-V3.2's chat format: special tokens, DSML tags and templates.

Every string here is pinned by the official encoder's test case (`fixtures/dsml/official_output.txt`)
or by the public description of DeepSeek-V3.2's `encoding_dsv32.py`; a single changed character
changes what the model sees.
"""

from __future__ import annotations

BOS_TOKEN = "<｜begin▁of▁sentence｜>"
EOS_TOKEN = "<｜end▁of▁sentence｜>"
BOS_ID = 0
EOS_ID = 1
USER_TOKEN = "<｜User｜>"
ASSISTANT_TOKEN = "<｜Assistant｜>"
THINK_START = "<think>"
THINK_END = "</think>"
DSML_TOKEN = "｜DSML｜"

# Tags of a tool-call block. The parser matches the tag openers (without the closing `>`), as the
# official parser does, so that attributes and whitespace can follow.
CALLS_OPEN = f"<{DSML_TOKEN}function_calls"
CALLS_CLOSE = f"</{DSML_TOKEN}function_calls"
INVOKE_OPEN = f"<{DSML_TOKEN}invoke"
INVOKE_CLOSE = f"</{DSML_TOKEN}invoke"
PARAM_OPEN = f"<{DSML_TOKEN}parameter"
PARAM_CLOSE = f"</{DSML_TOKEN}parameter"
# The official format always puts a blank line between the content and the tool-call block.
CALLS_START = "\n\n" + CALLS_OPEN

# Tokens that must never appear inside reasoning or content. The official parser checks the first five;
# the two turn markers are added because a model that writes them is inventing the next turn.
SPECIAL_TOKENS = (BOS_TOKEN, EOS_TOKEN, THINK_START, THINK_END, DSML_TOKEN, USER_TOKEN, ASSISTANT_TOKEN)

# The tools block appended to a system (or developer) message; {tool_schemas} is one JSON object per
# line. Text pinned byte for byte by the official fixture.
TOOLS_TEMPLATE = """## Tools

You have access to a set of tools you can use to answer the user's question.
You can invoke functions by writing a "<{dsml}function_calls>" block like the following as part of your reply to the user:
<{dsml}function_calls>
<{dsml}invoke name="$FUNCTION_NAME">
<{dsml}parameter name="$PARAMETER_NAME" string="true|false">$PARAMETER_VALUE</{dsml}parameter>
...
</{dsml}invoke>
<{dsml}invoke name="$FUNCTION_NAME2">
...
</{dsml}invoke>
</{dsml}function_calls>

String and scalar parameters should be specified as is without any escaping or quotes, while lists and objects should use JSON format. The "string" attribute should be set to "true" for string type parameters and "false" for other types (numbers, booleans, arrays, objects).

If the thinking_mode is enabled, then after function results you should strongly consider outputting a thinking block. Here is an example:

<{dsml}function_calls>
...
</{dsml}function_calls>

<function_results>
...
</function_results>

{think_start}...thinking about results{think_end}

Here are the functions available in JSONSchema format:
<functions>
{tool_schemas}
</functions>
"""  # noqa: E501

# Not covered by the fixture; taken from the public description of the official encoder.
RESPONSE_FORMAT_TEMPLATE = "## Response Format:\n\nYou MUST strictly adhere to the following schema to reply:\n{schema}"
DEVELOPER_USER_PREFIX = "\n\n# The user's message is: "

INVOKE_TEMPLATE = '<{dsml}invoke name="{name}">\n{arguments}\n</{dsml}invoke>'
CALLS_TEMPLATE = "<{dsml}function_calls>\n{calls}\n</{dsml}function_calls>"
PARAM_TEMPLATE = '<{dsml}parameter name="{name}" string="{is_str}">{value}</{dsml}parameter>'
RESULTS_OPEN = "\n\n<function_results>"
RESULT_TEMPLATE = "\n<result>{content}</result>"
RESULTS_CLOSE = "\n</function_results>"
