"""How a Responses request becomes the chat-completions body the one call runs."""

from __future__ import annotations

from gateway.doors.responses import IMAGES_FOLLOW, chat_body
from gateway.validation import validate_chat

IMAGE = {"type": "input_image", "image_url": "data:image/png;base64,iVBORw0KGgo=", "detail": "low"}


def call(call_id: str) -> dict[str, str]:
    return {"type": "function_call", "call_id": call_id, "name": "view_image", "arguments": "{}"}


def test_images_a_function_returned_follow_its_run_of_outputs_in_a_user_message() -> None:
    body = chat_body(
        {
            "model": "m",
            "input": [
                {"role": "user", "content": "Look at both."},
                call("a"),
                call("b"),
                {"type": "function_call_output", "call_id": "a", "output": [IMAGE]},
                {
                    "type": "function_call_output",
                    "call_id": "b",
                    "output": [{"type": "input_text", "text": "b.png:"}, IMAGE],
                },
                {"role": "user", "content": "Well?"},
            ],
        }
    )

    validate_chat(body)
    image = {"type": "image_url", "image_url": {"url": IMAGE["image_url"], "detail": "low"}}
    assert [m["role"] for m in body["messages"]] == [
        "user",
        "assistant",
        "tool",
        "tool",
        "user",
        "user",
    ]
    assert [c["id"] for c in body["messages"][1]["tool_calls"]] == ["a", "b"]
    assert body["messages"][2] == {"role": "tool", "tool_call_id": "a", "content": IMAGES_FOLLOW}
    assert body["messages"][3] == {"role": "tool", "tool_call_id": "b", "content": "b.png:"}
    assert body["messages"][4] == {"role": "user", "content": [image, image]}


def test_images_returned_last_are_sent_after_the_outputs() -> None:
    body = chat_body(
        {
            "model": "m",
            "input": [
                call("a"),
                {"type": "function_call_output", "call_id": "a", "output": [IMAGE]},
            ],
        }
    )

    assert [m["role"] for m in body["messages"]] == ["assistant", "tool", "user"]


def test_a_string_input_with_instructions_is_a_system_and_a_user_message() -> None:
    body = chat_body({"model": "m", "input": "Hi", "instructions": "Be brief.", "stream": True})

    assert body == {
        "model": "m",
        "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "Hi"},
        ],
        "stream": True,
    }


def test_text_format_json_schema_becomes_response_format() -> None:
    schema = {"type": "object", "properties": {"a": {"type": "string"}}}
    body = chat_body(
        {
            "model": "m",
            "input": "Hi",
            "text": {
                "format": {"type": "json_schema", "name": "out", "schema": schema, "strict": True},
                "verbosity": "low",
            },
        }
    )

    assert body["response_format"] == {
        "type": "json_schema",
        "json_schema": {"name": "out", "schema": schema, "strict": True},
    }
    assert body["verbosity"] == "low"


def test_without_tools_neither_tool_choice_nor_parallel_tool_calls_is_sent() -> None:
    body = chat_body(
        {"model": "m", "input": "Hi", "tool_choice": "auto", "parallel_tool_calls": False}
    )

    assert "tool_choice" not in body and "parallel_tool_calls" not in body and "tools" not in body
