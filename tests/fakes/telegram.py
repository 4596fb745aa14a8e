"""A local imitation of the Telegram Bot API, for tests through the real python-telegram-bot.

An aiohttp server on 127.0.0.1 (a random port). PTB is pointed at it with its `base_url`
(`telegram.Bot(token, base_url=fake.url)`, or `TELEGRAM_API_BASE_URL=fake.url`), so
everything between PTB's call and the HTTP request — parameters, encoding, error mapping — is
PTB's own. Requests are `POST /bot<TOKEN>/<method>`; the token must be the fake's (`TOKEN`),
else 401 Unauthorized, which PTB raises as `telegram.error.InvalidToken`. Methods answered
(case-insensitively, as Telegram does; any other is 404 Not Found):

- `getMe`: the bot (`bot_user`, username `phoenix95_test_bot`)
- `sendMessage`: recorded in `sent` (`SentMessage`: chat_id, text, parse_mode, reply_markup,
  a timestamp) and answered with a Message (message_id, date, chat, from, text without its
  tags, entities). Checked as Telegram does: text empty or over 4096 characters after
  entity parsing, HTML that Telegram cannot parse (unsupported or unclosed tags, a `<` that
  is not a tag), an unknown parse mode, and inline keyboards (`callback_data` 1–64 bytes)
  are 400 Bad Request with Telegram's description
- `editMessageText`, `editMessageReplyMarkup`: edit a message the bot sent (recorded in
  `edits`); 400 "message to edit not found", and 400 "message is not modified" for the same
  content and markup, as Telegram answers
- `deleteMessage`
- `answerCallbackQuery`: recorded in `callback_answers`; only for a query id `add_callback`
  issued and not yet answered, else 400 "query is too old…"
- `getUpdates`: the updates queued with `add_command`, `add_message`, `add_callback` or
  `add_update`, with Telegram's `offset` (confirms and drops earlier ones), `limit` and
  `timeout` (long polling: held until an update arrives, the timeout ends, or the fake goes
  down or closes). A second getUpdates while one is held ends the first with 409 Conflict,
  as Telegram does with two bots polling
- `deleteWebhook` (`drop_pending_updates` drops the queue), `getWebhookInfo`
- `setMyCommands`, `getMyCommands`, `deleteMyCommands` (per scope and language code;
  `commands` reads the default scope's)

Every request that reaches the server is recorded in `requests` (`ApiCall`: method, params,
monotonic arrival time, HTTP status answered), refused ones too: `calls("sendMessage")` are
the send attempts, so a test measures the delay between a 429 and the retry.

Injected behaviour:

- `rate_limit(times=k, retry_after=N)`: the next k sendMessage calls answer 429 `Too Many
  Requests: retry after N` with `parameters.retry_after` (PTB: `telegram.error.RetryAfter`)
- `flood_interval_s`: when set, a sendMessage to a chat sooner than that after the last one
  accepted for the same chat answers 429 with the seconds left (rounded up), like Telegram's
  flood control (about one message per second per chat)
- `fail(method, error_code, description, times=…)`: any error answer, e.g. 403 "Forbidden:
  bot was blocked by the user" (PTB: `Forbidden`), 400 "Bad Request: chat not found"
- `await down()`: Telegram unreachable. By default the listening socket is closed and the open
  connections dropped, so PTB gets "connection refused" (httpx.ConnectError), which it raises
  as `telegram.error.NetworkError`; `await down("502")` keeps listening and answers every
  request 502 Bad Gateway with an HTML page, as a proxy in front of Telegram does, which PTB
  also raises as `NetworkError`. `await heal()` listens again on the same port (the `url`
  does not change). Down by refusal records nothing (nothing arrives)
- `latency_s`: every answer is held that long first (below PTB's read timeout: slow; above:
  `telegram.error.TimedOut`, a `NetworkError` too)

`await wait_sent(n, within_s=…)` waits until `n` messages were accepted, for tests of code
that sends in the background.
"""

from __future__ import annotations

import asyncio
import html
import itertools
import json
import math
import re
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qsl

from aiohttp import web

TOKEN = "7000000001:TEST-fake-token-of-the-local-imitation"
BOT_USERNAME = "phoenix95_test_bot"
MAX_TEXT = 4096
MAX_POLL_S = 30.0  # a getUpdates `timeout` is honoured up to this

UNAUTHORIZED = {"ok": False, "error_code": 401, "description": "Unauthorized"}
NOT_FOUND = {"ok": False, "error_code": 404, "description": "Not Found"}
CONFLICT = ("Conflict: terminated by other getUpdates request; make sure that only one bot "
            "instance is running")
BAD_GATEWAY_PAGE = ("<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body>\r\n"
                    "<center><h1>502 Bad Gateway</h1></center>\r\n<hr><center>nginx</center>"
                    "\r\n</body>\r\n</html>\r\n")

# Telegram's HTML: tag → entity type (https://core.telegram.org/bots/api#html-style)
ENTITY_TYPES = {
    "b": "bold", "strong": "bold", "i": "italic", "em": "italic", "u": "underline",
    "ins": "underline", "s": "strikethrough", "strike": "strikethrough", "del": "strikethrough",
    "span": "spoiler", "tg-spoiler": "spoiler", "a": "text_link", "code": "code", "pre": "pre",
    "blockquote": "blockquote", "tg-emoji": "custom_emoji",
}
NAMED_ENTITIES = {"lt": "<", "gt": ">", "amp": "&", "quot": '"'}
_ENTITY = re.compile(r"&(?:#(\d{1,7})|#[xX]([0-9a-fA-F]{1,6})|([A-Za-z]+));")
_ATTRIBUTE = re.compile(r"""\s*([A-Za-z][\w-]*)(?:\s*=\s*(?:"([^"]*)"|'([^']*)'|([^\s>]+)))?""")
JSON_FIELDS = frozenset({"reply_markup", "commands", "scope", "allowed_updates", "entities",
                         "link_preview_options", "reply_parameters", "caption_entities"})
_COMMAND = re.compile(r"^[a-z0-9_]{1,32}$")


class BadRequest(Exception):
    """A 400 answer; the message is Telegram's description without "Bad Request: "."""


# ---------------------------------------------------------------------------------------------
# Records
# ---------------------------------------------------------------------------------------------


@dataclass
class ApiCall:
    """One request as the fake saw it."""

    method: str  # as in the path, e.g. "sendMessage"
    params: dict[str, Any]  # query and body together; JSON-encoded objects decoded
    at: float  # time.monotonic() on arrival
    status: int = 0  # what the fake answered
    description: str = ""  # the error description, for an error
    token_ok: bool = True


@dataclass
class SentMessage:
    """A message Telegram accepted (sendMessage)."""

    message_id: int
    chat_id: int | str
    text: str  # as sent: the HTML source with parse_mode HTML
    parse_mode: str | None
    reply_markup: dict[str, Any] | None
    disable_notification: bool
    plain: str  # as Telegram shows it: tags removed, entities decoded
    entities: list[dict[str, Any]]
    at: float  # time.monotonic() when accepted
    sent_at: datetime  # the wall clock then (UTC)
    params: dict[str, Any] = field(default_factory=dict)

    @property
    def buttons(self) -> list[dict[str, Any]]:
        """The inline keyboard's buttons, row after row."""
        rows = (self.reply_markup or {}).get("inline_keyboard") or []
        return [button for row in rows for button in row]


@dataclass
class EditedMessage:
    method: str  # editMessageText | editMessageReplyMarkup
    chat_id: int | str
    message_id: int
    text: str | None  # the new text (editMessageText)
    parse_mode: str | None
    reply_markup: dict[str, Any] | None
    at: float


@dataclass
class CallbackAnswer:
    callback_query_id: str
    text: str | None
    show_alert: bool
    at: float


@dataclass
class _Stored:
    """A message in a chat, as it is now (what edits and callback queries see)."""

    chat_id: int | str
    message_id: int
    date: int
    text: str
    entities: list[dict[str, Any]]
    reply_markup: dict[str, Any] | None
    from_bot: bool
    edit_date: int | None = None
    source: tuple[str, str | None] = ("", None)  # (text, parse_mode) as last sent


@dataclass
class _Failure:
    status: int
    description: str
    parameters: dict[str, Any] | None
    remaining: int | None  # None: until healed


# ---------------------------------------------------------------------------------------------
# Telegram's HTML
# ---------------------------------------------------------------------------------------------


def _utf16_len(text: str) -> int:
    return len(text.encode("utf-16-le")) // 2


def parse_html(source: str) -> tuple[str, list[dict[str, Any]]]:
    """(plain text, entities) as Telegram parses `parse_mode=HTML`; BadRequest("can't parse
    entities: …") where Telegram refuses. Offsets and lengths are in UTF-16 code units."""
    plain: list[str] = []
    plain_len = 0  # in UTF-16 code units
    stack: list[tuple[str, dict[str, str], int, int]] = []  # (name, attributes, start, at)
    entities: list[dict[str, Any]] = []
    i, n = 0, len(source)

    def refuse(what: str) -> BadRequest:
        return BadRequest(f"can't parse entities: {what}")

    def byte_offset(index: int) -> int:
        return len(source[:index].encode())

    while i < n:
        char = source[i]
        if char == "&":
            match = _ENTITY.match(source, i)
            decoded = None
            if match is not None:
                if match.group(1) or match.group(2):
                    code = int(match.group(1)) if match.group(1) else int(match.group(2), 16)
                    decoded = chr(code) if 0 < code < 0x110000 else None
                else:
                    decoded = NAMED_ENTITIES.get(match.group(3))
            if decoded is None:  # Telegram keeps an `&` that starts no entity as it is
                plain.append("&")
                plain_len += 1
                i += 1
            else:
                plain.append(decoded)
                plain_len += _utf16_len(decoded)
                i = match.end() if match is not None else i + 1
            continue
        if char != "<":
            plain.append(char)
            plain_len += _utf16_len(char)
            i += 1
            continue
        start = i
        if source.startswith("</", i):
            end = source.find(">", i)
            if end < 0:
                raise refuse(f"Unclosed end tag at byte offset {byte_offset(start)}")
            name = source[i + 2:end].strip().lower()
            if not stack:
                raise refuse(f"Unexpected end tag at byte offset {byte_offset(start)}")
            open_name, attributes, entity_start, _ = stack.pop()
            if name != open_name:
                raise refuse(f'Unmatched end tag at byte offset {byte_offset(start)}, expected '
                             f'"</{open_name}>", found "</{name}>"')
            _entity(entities, open_name, attributes, entity_start, plain_len - entity_start,
                    stack)
            i = end + 1
            continue
        j = i + 1
        while j < n and not source[j].isspace() and source[j] not in "<>":
            j += 1
        name = source[i + 1:j].lower()
        if name not in ENTITY_TYPES:
            raise refuse(f'Unsupported start tag "{name}" at byte offset {byte_offset(start)}')
        attributes: dict[str, str] = {}
        while True:
            while j < n and source[j].isspace():
                j += 1
            if j >= n:
                raise refuse(f"Unclosed start tag at byte offset {byte_offset(start)}")
            if source[j] == ">":
                break
            match = _ATTRIBUTE.match(source, j)
            if match is None or match.end() == j:
                raise refuse(f'Expected equal sign in declaration of an attribute of the tag '
                             f'at byte offset {byte_offset(start)}')
            value = next((g for g in match.group(2, 3, 4) if g is not None), "")
            attributes[match.group(1).lower()] = html.unescape(value)
            j = match.end()
        if name == "span" and attributes.get("class") != "tg-spoiler":
            raise refuse(f'Tag "span" must have class "tg-spoiler" at byte offset '
                         f'{byte_offset(start)}')
        stack.append((name, attributes, plain_len, start))
        i = j + 1
    if stack:
        raise refuse(f'Can\'t find end tag corresponding to start tag "{stack[-1][0]}"')
    entities.sort(key=lambda e: (e["offset"], -e["length"]))
    return "".join(plain), entities


def _entity(entities: list[dict[str, Any]], name: str, attributes: dict[str, str],
            offset: int, length: int, outer: list[tuple[str, dict[str, str], int, int]]
            ) -> None:
    if length <= 0:
        return
    kind = ENTITY_TYPES[name]
    entity: dict[str, Any] = {"type": kind, "offset": offset, "length": length}
    if name == "a":
        url = attributes.get("href", "")
        if url.startswith("tg://user?id="):
            entity = {"type": "text_mention", "offset": offset, "length": length,
                      "user": {"id": int(url.rsplit("=", 1)[1] or 0), "is_bot": False,
                               "first_name": ""}}
        else:
            entity["url"] = url
    elif name == "blockquote" and "expandable" in attributes:
        entity["type"] = "expandable_blockquote"
    elif name == "tg-emoji":
        entity["custom_emoji_id"] = attributes.get("emoji-id", "")
    elif name == "code" and outer and outer[-1][0] == "pre":
        language = attributes.get("class", "")
        if language.startswith("language-"):
            outer_entity_language = language.removeprefix("language-")
            # Telegram turns <pre><code class="language-x"> into one pre entity with x
            outer[-1][1]["_language"] = outer_entity_language
        return
    elif name == "pre" and attributes.get("_language"):
        entity["language"] = attributes["_language"]
    entities.append(entity)


def _check_keyboard(markup: Any) -> None:
    if markup is None:
        return
    if not isinstance(markup, dict):
        raise BadRequest("can't parse reply keyboard markup JSON object")
    rows = markup.get("inline_keyboard")
    if rows is None:
        return  # reply keyboards, force reply, remove keyboard: not checked
    if not isinstance(rows, list) or not all(isinstance(row, list) for row in rows):
        raise BadRequest("field \"inline_keyboard\" must be an Array of Arrays")
    for row in rows:
        for button in row:
            if not isinstance(button, dict) or not button.get("text"):
                raise BadRequest("BUTTON_TEXT_INVALID")
            data = button.get("callback_data")
            if data is not None and not 1 <= len(str(data).encode()) <= 64:
                raise BadRequest("BUTTON_DATA_INVALID")
            if data is None and not any(key in button for key in (
                    "url", "login_url", "switch_inline_query", "switch_inline_query_current_chat",
                    "switch_inline_query_chosen_chat", "callback_game", "pay", "web_app",
                    "copy_text")):
                raise BadRequest("can't find field \"callback_data\"")


# ---------------------------------------------------------------------------------------------
# The server
# ---------------------------------------------------------------------------------------------


class FakeTelegram:
    """The Bot API on 127.0.0.1. Use as `async with FakeTelegram() as tg: …tg.url…`."""

    def __init__(self, token: str = TOKEN, *, username: str = BOT_USERNAME) -> None:
        self.token = token
        self.bot_user: dict[str, Any] = {
            "id": int(token.split(":", 1)[0]) if token.split(":", 1)[0].isdigit() else 1,
            "is_bot": True, "first_name": "Phoenix 95", "username": username,
            "can_join_groups": True, "can_read_all_group_messages": False,
            "supports_inline_queries": False, "can_connect_to_business": False,
            "has_main_web_app": False,
        }
        self.requests: list[ApiCall] = []
        self.sent: list[SentMessage] = []
        self.edits: list[EditedMessage] = []
        self.deleted: list[tuple[int | str, int]] = []
        self.callback_answers: list[CallbackAnswer] = []
        self.my_commands: dict[tuple[str, str], list[dict[str, str]]] = {}
        self.webhook_deleted = 0
        self.flood_interval_s: float | None = None
        self.latency_s = 0.0
        self.is_down: str | None = None  # None, "refuse" or "502"
        self._messages: dict[tuple[int | str, int], _Stored] = {}
        self._message_ids: dict[int | str, itertools.count[int]] = {}
        self._last_sent: dict[int | str, float] = {}
        self._updates: list[dict[str, Any]] = []
        self._update_ids = itertools.count(100_000_001)
        self._callback_ids = itertools.count(4_377_001)
        self._open_callbacks: set[str] = set()
        self._failures: dict[str, _Failure] = {}
        self._wakeup = asyncio.Event()
        self._poll_seq = 0
        self._closing = False
        self._runner: web.AppRunner | None = None
        self._site: web.TCPSite | None = None
        self.port = 0

    # --- set-up and injection ---------------------------------------------------------------

    @property
    def url(self) -> str:
        """PTB's `base_url` (PTB appends the token)."""
        return f"http://127.0.0.1:{self.port}/bot"

    def rate_limit(self, times: int = 1, retry_after: int = 1,
                   method: str = "sendMessage") -> None:
        """The next `times` calls of `method` answer 429 with `retry_after` seconds."""
        self.fail(method, 429, f"Too Many Requests: retry after {retry_after}", times=times,
                  parameters={"retry_after": retry_after})

    def fail(self, method: str, error_code: int, description: str, *, times: int | None = 1,
             parameters: dict[str, Any] | None = None) -> None:
        """The next `times` calls of `method` (all of them if None, until `heal`) answer
        Telegram's error JSON with `error_code` and `description`."""
        self._failures[method.lower()] = _Failure(error_code, description, parameters, times)

    async def down(self, how: str = "refuse") -> None:
        """Telegram unreachable until `heal`: "refuse" (connections refused) or "502"."""
        if how not in ("refuse", "502"):
            raise ValueError("down('refuse') or down('502')")
        self.is_down = how
        self._wake()
        if how == "refuse" and self._runner is not None:
            runner, self._runner, self._site = self._runner, None, None
            await runner.cleanup()  # stops listening and drops the open connections

    async def heal(self) -> None:
        """Up again (same port), and no more injected failures."""
        self._failures.clear()
        if self.is_down == "refuse":
            await self._listen(self.port)
        self.is_down = None

    # --- what the chat does ---------------------------------------------------------------

    def add_update(self, update: dict[str, Any]) -> int:
        """Queue a raw update (its `update_id` is set if missing); returns the update_id."""
        update.setdefault("update_id", next(self._update_ids))
        self._updates.append(update)
        self._wake()
        return int(update["update_id"])

    def add_message(self, chat_id: int, text: str, *, user_id: int | None = None,
                    first_name: str = "Operator", username: str | None = "operator") -> int:
        """A text message from a user in `chat_id` (a leading `/word` is a bot_command, as
        Telegram marks it); returns the update_id."""
        message = self._store(chat_id, text, [], None, from_bot=False)
        payload = self._message_json(message)
        payload["from"] = self._user(chat_id, user_id, first_name, username)
        command = re.match(r"/[A-Za-z0-9_]+(?:@[A-Za-z0-9_]+)?", text)
        if command:
            payload["entities"] = [{"type": "bot_command", "offset": 0,
                                    "length": _utf16_len(command.group(0))}]
        return self.add_update({"message": payload})

    def add_command(self, chat_id: int, text: str, **user: Any) -> int:
        """A command (`/status`, `/close BTCUSDT`) from `chat_id`; returns the update_id."""
        if not text.startswith("/"):
            raise ValueError("a command starts with /")
        return self.add_message(chat_id, text, **user)

    def add_callback(self, chat_id: int, data: str, message_id: int, *,
                     user_id: int | None = None, first_name: str = "Operator",
                     username: str | None = "operator") -> str:
        """A press on an inline button with `data` under the bot's message `message_id` in
        `chat_id`; returns the callback query id (for `answerCallbackQuery`)."""
        query_id = str(next(self._callback_ids))
        stored = self._messages.get((chat_id, message_id))
        message = (self._message_json(stored) if stored is not None else
                   {"message_id": message_id, "date": int(time.time()),
                    "chat": self._chat(chat_id), "from": self.bot_user, "text": ""})
        self._open_callbacks.add(query_id)
        self.add_update({"callback_query": {
            "id": query_id, "from": self._user(chat_id, user_id, first_name, username),
            "message": message, "chat_instance": f"-{abs(hash(chat_id)) % 10**18}",
            "data": data,
        }})
        return query_id

    @property
    def pending_updates(self) -> list[dict[str, Any]]:
        """Updates not yet confirmed by a getUpdates offset."""
        return list(self._updates)

    # --- reading what happened -------------------------------------------------------------

    def calls(self, method: str) -> list[ApiCall]:
        """The requests to `method` (every attempt, refused ones too)."""
        return [call for call in self.requests if call.method.lower() == method.lower()]

    def texts(self, chat_id: int | str | None = None) -> list[str]:
        """The texts accepted, in order (for one chat if given)."""
        return [m.text for m in self.sent if chat_id is None or m.chat_id == chat_id]

    @property
    def commands(self) -> list[dict[str, str]]:
        """The commands set for the default scope and no language code."""
        return self.my_commands.get(("default", ""), [])

    def message(self, chat_id: int | str, message_id: int) -> dict[str, Any] | None:
        """A message as it is now (after edits), as Telegram would send it."""
        stored = self._messages.get((chat_id, message_id))
        return self._message_json(stored) if stored is not None else None

    async def wait_sent(self, count: int, within_s: float = 5.0) -> list[SentMessage]:
        """Wait until at least `count` messages were accepted; TimeoutError if not in time."""
        deadline = time.monotonic() + within_s
        while len(self.sent) < count:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"{len(self.sent)} message(s) sent, {count} expected: "
                                   f"{self.texts()}")
            await self._wait(left)
        return self.sent

    # --- lifecycle -------------------------------------------------------------------------

    async def start(self) -> FakeTelegram:
        await self._listen(0)
        return self

    async def close(self) -> None:
        self._closing = True
        self._wake()
        if self._runner is not None:
            runner, self._runner, self._site = self._runner, None, None
            await runner.cleanup()

    async def __aenter__(self) -> FakeTelegram:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def _listen(self, port: int) -> None:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._dispatch)
        runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.5)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", port, reuse_address=True)
        await site.start()
        self._runner, self._site = runner, site
        self.port = runner.addresses[0][1]

    # --- handling --------------------------------------------------------------------------

    async def _dispatch(self, request: web.Request) -> web.StreamResponse:
        match = re.fullmatch(r"/bot([^/]+)/([A-Za-z]+)/?", request.path)
        params = await _params(request)
        if match is None:
            self.requests.append(ApiCall(request.path, params, time.monotonic(), 404,
                                         NOT_FOUND["description"], token_ok=False))
            return web.json_response(NOT_FOUND, status=404)
        token, method = match.groups()
        call = ApiCall(method, params, time.monotonic())
        self.requests.append(call)
        if self.latency_s:
            await asyncio.sleep(self.latency_s)
        if self.is_down == "502":
            call.status, call.description = 502, "Bad Gateway"
            return web.Response(status=502, text=BAD_GATEWAY_PAGE, content_type="text/html")
        if token != self.token:
            call.status, call.description, call.token_ok = 401, "Unauthorized", False
            return web.json_response(UNAUTHORIZED, status=401)
        status, body = await self._answer(method, params)
        call.status = status
        if not body.get("ok"):
            call.description = str(body.get("description", ""))
        return web.json_response(body, status=status)

    async def _answer(self, method: str, params: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        key = method.lower()
        failure = self._failures.get(key)
        if failure is not None:
            if failure.remaining is not None:
                failure.remaining -= 1
                if failure.remaining <= 0:
                    del self._failures[key]
            return _error(failure.status, failure.description, failure.parameters)
        handler = {
            "getme": lambda p: self.bot_user,
            "sendmessage": self._send_message,
            "editmessagetext": self._edit_text,
            "editmessagereplymarkup": self._edit_markup,
            "deletemessage": self._delete_message,
            "answercallbackquery": self._answer_callback,
            "deletewebhook": self._delete_webhook,
            "getwebhookinfo": lambda p: {"url": "", "has_custom_certificate": False,
                                         "pending_update_count": len(self._updates)},
            "setmycommands": self._set_commands,
            "getmycommands": lambda p: self.my_commands.get(_scope_key(p), []),
            "deletemycommands": self._delete_commands,
        }.get(key)
        try:
            if key == "getupdates":
                return await self._get_updates(params)
            if handler is None:
                return 404, NOT_FOUND
            return 200, {"ok": True, "result": handler(params)}
        except BadRequest as exc:
            return _error(400, f"Bad Request: {exc}")
        except _FloodWait as wait:
            return _error(429, f"Too Many Requests: retry after {wait.seconds}",
                          {"retry_after": wait.seconds})

    def _send_message(self, params: dict[str, Any]) -> dict[str, Any]:
        chat_id = _chat_id(params.get("chat_id"))
        text = params.get("text")
        if text is None:
            raise BadRequest("message text is empty")
        text = str(text)
        parse_mode = params.get("parse_mode") or None
        plain, entities = _render(text, parse_mode)
        markup = params.get("reply_markup")
        _check_keyboard(markup)
        now = time.monotonic()
        if self.flood_interval_s is not None and chat_id in self._last_sent:
            left = self._last_sent[chat_id] + self.flood_interval_s - now
            if left > 0:
                raise _FloodWait(max(1, math.ceil(left)))
        self._last_sent[chat_id] = now
        stored = self._store(chat_id, plain, entities, markup, from_bot=True)
        stored.source = (text, parse_mode)
        self.sent.append(SentMessage(
            message_id=stored.message_id, chat_id=chat_id, text=text, parse_mode=parse_mode,
            reply_markup=markup, disable_notification=_flag(params.get("disable_notification")),
            plain=plain, entities=entities, at=now, sent_at=datetime.now(UTC), params=params))
        self._wake()
        return self._message_json(stored)

    def _edit_text(self, params: dict[str, Any]) -> dict[str, Any]:
        stored = self._editable(params)
        text = params.get("text")
        if text is None:
            raise BadRequest("message text is empty")
        parse_mode = params.get("parse_mode") or None
        plain, entities = _render(str(text), parse_mode)
        markup = params.get("reply_markup")
        _check_keyboard(markup)
        if (plain, entities, markup) == (stored.text, stored.entities, stored.reply_markup):
            raise BadRequest("message is not modified: specified new message content and "
                             "reply markup are exactly the same as a current content and reply "
                             "markup of the message")
        stored.text, stored.entities, stored.reply_markup = plain, entities, markup
        stored.source = (str(text), parse_mode)
        stored.edit_date = int(time.time())
        self.edits.append(EditedMessage("editMessageText", stored.chat_id, stored.message_id,
                                        str(text), parse_mode, markup, time.monotonic()))
        return self._message_json(stored)

    def _edit_markup(self, params: dict[str, Any]) -> dict[str, Any]:
        stored = self._editable(params)
        markup = params.get("reply_markup")
        _check_keyboard(markup)
        if markup == stored.reply_markup or (not markup and not stored.reply_markup):
            raise BadRequest("message is not modified: specified new message content and "
                             "reply markup are exactly the same as a current content and reply "
                             "markup of the message")
        stored.reply_markup = markup or None
        stored.edit_date = int(time.time())
        self.edits.append(EditedMessage("editMessageReplyMarkup", stored.chat_id,
                                        stored.message_id, None, None, markup,
                                        time.monotonic()))
        return self._message_json(stored)

    def _editable(self, params: dict[str, Any]) -> _Stored:
        if params.get("inline_message_id"):
            raise BadRequest("MESSAGE_ID_INVALID")
        chat_id = _chat_id(params.get("chat_id"))
        try:
            message_id = int(params.get("message_id", ""))
        except ValueError:
            raise BadRequest("message identifier is not specified") from None
        stored = self._messages.get((chat_id, message_id))
        if stored is None:
            raise BadRequest("message to edit not found")
        if not stored.from_bot:
            raise BadRequest("message can't be edited")
        return stored

    def _delete_message(self, params: dict[str, Any]) -> bool:
        chat_id = _chat_id(params.get("chat_id"))
        message_id = int(params.get("message_id", 0))
        if self._messages.pop((chat_id, message_id), None) is None:
            raise BadRequest("message to delete not found")
        self.deleted.append((chat_id, message_id))
        return True

    def _answer_callback(self, params: dict[str, Any]) -> bool:
        query_id = str(params.get("callback_query_id", ""))
        if query_id not in self._open_callbacks:
            raise BadRequest("query is too old and response timeout expired or query ID is "
                             "invalid")
        self._open_callbacks.discard(query_id)
        text = params.get("text")
        self.callback_answers.append(CallbackAnswer(
            query_id, None if text is None else str(text), _flag(params.get("show_alert")),
            time.monotonic()))
        return True

    def _delete_webhook(self, params: dict[str, Any]) -> bool:
        self.webhook_deleted += 1
        if _flag(params.get("drop_pending_updates")):
            self._updates.clear()
        return True

    def _set_commands(self, params: dict[str, Any]) -> bool:
        commands = params.get("commands")
        if not isinstance(commands, list):
            raise BadRequest("parameter \"commands\" must be an Array")
        for command in commands:
            if not isinstance(command, dict) or not _COMMAND.match(str(command.get("command"))):
                raise BadRequest("BOT_COMMAND_INVALID")
            if not 1 <= len(str(command.get("description", ""))) <= 256:
                raise BadRequest("BOT_COMMAND_DESCRIPTION_INVALID")
        self.my_commands[_scope_key(params)] = [
            {"command": str(c["command"]), "description": str(c["description"])}
            for c in commands]
        return True

    def _delete_commands(self, params: dict[str, Any]) -> bool:
        self.my_commands.pop(_scope_key(params), None)
        return True

    async def _get_updates(self, params: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        offset = _int(params.get("offset"), 0)
        limit = min(max(_int(params.get("limit"), 100), 1), 100)
        timeout = min(max(_float(params.get("timeout")), 0.0), MAX_POLL_S)
        if offset > 0:
            self._updates = [u for u in self._updates if u["update_id"] >= offset]
        self._poll_seq += 1
        mine = self._poll_seq
        self._wake()  # a poll still held ends with 409
        deadline = time.monotonic() + timeout
        while not self._updates and not self._closing and self.is_down is None:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            await self._wait(left)
            if self._poll_seq != mine:
                return _error(409, CONFLICT)
        return 200, {"ok": True, "result": self._updates[:limit]}

    # --- helpers ---------------------------------------------------------------------------

    def _wake(self) -> None:
        self._wakeup.set()
        self._wakeup = asyncio.Event()

    async def _wait(self, seconds: float) -> None:
        try:
            await asyncio.wait_for(self._wakeup.wait(), seconds)
        except TimeoutError:
            pass

    def _store(self, chat_id: int | str, text: str, entities: list[dict[str, Any]],
               markup: dict[str, Any] | None, *, from_bot: bool) -> _Stored:
        ids = self._message_ids.setdefault(chat_id, itertools.count(1))
        stored = _Stored(chat_id, next(ids), int(time.time()), text, entities, markup or None,
                         from_bot)
        self._messages[(chat_id, stored.message_id)] = stored
        return stored

    def _message_json(self, stored: _Stored) -> dict[str, Any]:
        message: dict[str, Any] = {
            "message_id": stored.message_id, "date": stored.date,
            "chat": self._chat(stored.chat_id), "text": stored.text,
        }
        if stored.from_bot:
            message["from"] = self.bot_user
        if stored.entities:
            message["entities"] = stored.entities
        if stored.reply_markup:
            message["reply_markup"] = stored.reply_markup
        if stored.edit_date is not None:
            message["edit_date"] = stored.edit_date
        return message

    @staticmethod
    def _chat(chat_id: int | str) -> dict[str, Any]:
        if isinstance(chat_id, str):
            return {"id": -1001000000001, "type": "channel", "title": chat_id,
                    "username": chat_id.lstrip("@")}
        if chat_id > 0:
            return {"id": chat_id, "type": "private", "first_name": "Operator",
                    "username": "operator"}
        if chat_id < -1_000_000_000_000:
            return {"id": chat_id, "type": "supergroup", "title": "Phoenix 95 ops"}
        return {"id": chat_id, "type": "group", "title": "Phoenix 95 ops"}

    @staticmethod
    def _user(chat_id: int, user_id: int | None, first_name: str, username: str | None
              ) -> dict[str, Any]:
        user: dict[str, Any] = {
            "id": user_id if user_id is not None else (chat_id if chat_id > 0 else 5_550_001),
            "is_bot": False, "first_name": first_name, "language_code": "en"}
        if username:
            user["username"] = username
        return user


class _FloodWait(Exception):
    def __init__(self, seconds: int) -> None:
        super().__init__(seconds)
        self.seconds = seconds


def _error(status: int, description: str, parameters: dict[str, Any] | None = None
           ) -> tuple[int, dict[str, Any]]:
    body: dict[str, Any] = {"ok": False, "error_code": status, "description": description}
    if parameters:
        body["parameters"] = parameters
    return status, body


def _render(text: str, parse_mode: str | None) -> tuple[str, list[dict[str, Any]]]:
    if parse_mode is None:
        plain, entities = text, []
    elif parse_mode.lower() == "html":
        plain, entities = parse_html(text)
    elif parse_mode.lower() in ("markdown", "markdownv2"):
        plain, entities = text, []  # not parsed by the fake
    else:
        raise BadRequest("unsupported parse_mode")
    if not plain.strip():
        raise BadRequest("message text is empty")
    if len(plain) > MAX_TEXT:
        raise BadRequest("message is too long")
    return plain, entities


async def _params(request: web.Request) -> dict[str, Any]:
    """Query and body (form, multipart or JSON) together; JSON-encoded values decoded (PTB
    sends objects such as `reply_markup` as JSON strings in a form)."""
    params: dict[str, Any] = dict(parse_qsl(request.query_string, keep_blank_values=True))
    if request.method == "POST" and request.can_read_body:
        if request.content_type == "application/json":
            body = await request.json()
            if isinstance(body, dict):
                params |= body
        else:
            form = await request.post()
            params |= {key: value for key, value in form.items() if isinstance(value, str)}
    for key, value in list(params.items()):
        if key in JSON_FIELDS and isinstance(value, str) and value[:1] in ("{", "["):
            try:
                params[key] = json.loads(value)
            except ValueError:
                pass
    return params


def _chat_id(value: Any) -> int | str:
    if value is None or value == "":
        raise BadRequest("chat_id is empty")
    if isinstance(value, int):
        return value
    text = str(value)
    if re.fullmatch(r"-?\d+", text):
        return int(text)
    if text.startswith("@"):
        return text
    raise BadRequest("chat not found")


def _int(value: Any, default: int) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        return default


def _float(value: Any) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return 0.0


def _flag(value: Any) -> bool:
    return value is True or str(value).lower() in ("true", "1")


def _scope_key(params: dict[str, Any]) -> tuple[str, str]:
    scope = params.get("scope")
    kind = scope.get("type", "default") if isinstance(scope, dict) else "default"
    if isinstance(scope, dict) and "chat_id" in scope:
        kind += f":{scope['chat_id']}"
    return kind, str(params.get("language_code") or "")
