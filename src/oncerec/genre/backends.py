"""Where the answers come from, behind one interface: `await backend.complete(messages, params, prefix)`.

- `OpenAIBackend`: any OpenAI-compatible chat-completions endpoint (OpenAI, vLLM, llama.cpp server, Ollama,
  ...) through the official async `openai` client. The client's own retries are off: retries, backoff and
  rate limits are ours (limits.py), the same for every server. The API key is only handed to the client: it
  is never logged, stored, or put in an error message (server messages, and every text of a stored answer,
  go through `scrub`, which also masks any part of the key of 8 or more characters).
- `LocalBackend`: a local causal language model (default the packaged SmolLM2-135M-Instruct) run in process
  with transformers `generate`, so the whole pipeline works offline. Concurrent requests are gathered into
  batches (left padding); each answer stops as soon as its JSON object closes.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import importlib
import json
import logging
import os
from dataclasses import asdict, dataclass
from urllib.parse import urlparse

from oncerec.errors import OncerecError
from oncerec.extras import require
from oncerec.genre.limits import FatalError, RejectedError, TransientError, parse_retry_after
from oncerec.genre.parsing import json_object_span

logger = logging.getLogger(__name__)

DEFAULT_LOCAL_MODEL = "smollm2-135m"
QUOTE_MESSAGE = 300  # characters of a server's error message kept in the error
QUOTE_BODY = 120  # characters of a 2xx body that is not the chat-completions JSON kept in the error
SECRET_FRAGMENT = 8  # any run of this many characters of the key is masked (a cut or partly quoted key)
MASK = "***"


def scrub(text: str, secret: str) -> str:
    """`text` with the key and every part of it of SECRET_FRAGMENT or more characters masked as `***`: a key
    split by a cut, or partly quoted (`sk-abc...` in a proxy's page), leaves nothing usable. The one function
    every text that may hold the key goes through before it is stored or shown; cut a text after it, never
    before (a cut inside the key would leave a part too short to be recognized as a whole)."""
    if not secret or not text:
        return text
    if len(secret) < SECRET_FRAGMENT:
        return text.replace(secret, MASK)
    grams = _fragments(secret)
    if not any(gram in text for gram in grams):  # the usual case, at the speed of str.find
        return text
    masked = bytearray(len(text))
    for i in range(len(text) - SECRET_FRAGMENT + 1):
        if text[i : i + SECRET_FRAGMENT] in grams:
            masked[i : i + SECRET_FRAGMENT] = b"\1" * SECRET_FRAGMENT
    out, i = [], 0
    while i < len(text):
        if masked[i]:
            out.append(MASK)
            while i < len(text) and masked[i]:
                i += 1
        else:
            out.append(text[i])
            i += 1
    return "".join(out)


@functools.lru_cache(maxsize=4)
def _fragments(secret: str) -> frozenset[str]:
    return frozenset(secret[i : i + SECRET_FRAGMENT] for i in range(len(secret) - SECRET_FRAGMENT + 1))


@dataclass(frozen=True)
class GenParams:
    """Generation parameters: part of every stored answer's key (another temperature is another answer)."""

    temperature: float = 0.0
    max_tokens: int = 64
    json_mode: bool = False  # OpenAI backend: response_format={"type": "json_object"}

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass
class Completion:
    text: str
    tokens_in: int
    tokens_out: int


class Backend:
    kind = ""

    def __init__(self, model: str):
        self.model = model

    def scrub(self, text: str) -> str:
        """`text` safe to store or print: without credentials (backends that hold some override this)."""
        return text

    @property
    def identity(self) -> str:
        """The model as named in the store's keys."""
        return f"{self.kind}:{self.model}"

    async def complete(self, messages: list[dict], params: GenParams, prefix: str = "") -> Completion:
        raise NotImplementedError

    async def aclose(self) -> None:
        pass


# --------------------------------------------------------------------------------------------- OpenAI


class OpenAIBackend(Backend):
    kind = "openai"

    def __init__(
        self, model: str, base_url: str | None, api_key: str | None, timeout: float, connections: int
    ):
        super().__init__(model)
        require("genre", "the openai backend")
        from openai import AsyncOpenAI

        if not api_key and _is_openai(base_url):
            raise FatalError(
                "no API key: set OPENAI_API_KEY (or the variable named by --api-key-env), or give --base-url "
                "for a server that needs none"
            )
        if urlparse(base_url or "").password or urlparse(base_url or "").username:
            # The key travels as a Bearer token, which cannot go with URL credentials (basic auth); and a
            # password in a URL ends up in shell history and logs.
            raise FatalError(
                f"--base-url {display_url(base_url)}: give it without user:password@ (the key goes in "
                "the variable --api-key-env names)"
            )
        self._secret = api_key or ""
        # Servers such as vLLM or llama.cpp need no key, but the client insists on one.
        key = api_key or "no-key"
        self.client = AsyncOpenAI(
            api_key=key,
            base_url=base_url or None,
            timeout=timeout,
            max_retries=0,
            http_client=_http_client(connections, timeout),
        )

    def scrub(self, text: str) -> str:
        """Server messages may quote the key (OpenAI's 401 shows part of it), a proxy's page may echo the
        request's headers, a model may repeat it in an answer: never let it through."""
        return scrub(text, self._secret)

    async def complete(self, messages: list[dict], params: GenParams, prefix: str = "") -> Completion:
        import openai

        body = {
            "model": self.model,
            "messages": messages,
            "temperature": params.temperature,
            "max_tokens": params.max_tokens,
        }
        if params.json_mode:
            body["response_format"] = {"type": "json_object"}
        try:
            # The client's generic `post` (its documented way to reach any endpoint) with the body as JSON and
            # the answer as bytes: the typed `chat.completions.create` spends more CPU than the whole HTTP
            # exchange converting params and building response models, which caps requests/s on a small CPU.
            content = await self.client.post("/chat/completions", body=body, cast_to=bytes)
        except openai.APIStatusError as e:
            raise self._status_error(e) from None
        except openai.APIConnectionError as e:  # APITimeoutError is one too
            # the aiohttp transport reports a refused connection as a connect timeout: say what happened
            if _refused(e):
                raise TransientError(
                    f"connection refused by {display_url(str(self.client.base_url))}"
                ) from None
            if isinstance(e, openai.APITimeoutError):
                raise TransientError("timed out") from None
            raise TransientError(f"connection error: {self.scrub(str(e.__cause__ or e))}") from None
        try:
            data = json.loads(content)
            text = data["choices"][0]["message"]["content"] or ""
            usage = data.get("usage") or {}
        except (ValueError, KeyError, IndexError, TypeError) as e:
            # Not the chat-completions JSON: a proxy hiccup more often than a broken server.
            quoted = self.scrub(content.decode("utf-8", "replace"))[:QUOTE_BODY]
            raise TransientError(f"malformed response ({type(e).__name__}): {quoted!r}") from None
        tokens_in = usage.get("prompt_tokens") or estimate_tokens(messages)
        tokens_out = usage.get("completion_tokens") or len(text) // 4 + 1
        return Completion(text, int(tokens_in), int(tokens_out))

    def _status_error(self, e) -> Exception:
        status = e.status_code
        message = self.scrub(_error_message(e))[:QUOTE_MESSAGE]  # scrubbed whole: a cut may split the key
        if status in (401, 403):
            # The server's message is left out: it may quote the key.
            return FatalError(f"the endpoint refused the API key (HTTP {status}): check the key's variable")
        if status == 404:
            return FatalError(
                f"HTTP 404 from the endpoint: unknown model `{self.model}` or wrong --base-url ({message})"
            )
        if status in (408, 409, 429) or status >= 500:
            return TransientError(f"HTTP {status}: {message}", parse_retry_after(e.response.headers))
        return RejectedError(f"HTTP {status}: {message}")

    async def aclose(self) -> None:
        await self.client.close()


def _http_client(connections: int, timeout: float):
    """The client's own HTTP client with a keep-alive connection for every worker (the default keeps 100,
    and reconnecting costs more than a request to a local server), on the aiohttp transport when the
    `openai[aiohttp]` extra is installed: it spends about half the CPU per request of the default one, which
    is what caps requests/s at high concurrency. None (the default client) if this `openai` version has no
    such helpers."""
    import openai

    # openai 3 builds on httpx2, earlier versions on httpx
    module, default = (
        ("httpx2", "DefaultAsyncHttpx2Client")
        if hasattr(openai, "DefaultAsyncHttpx2Client")
        else ("httpx", "DefaultAsyncHttpxClient")
    )
    if not hasattr(openai, default):
        return None
    http = importlib.import_module(module)
    kwargs = {
        "limits": http.Limits(max_connections=connections, max_keepalive_connections=connections),
        "timeout": timeout,
    }
    if hasattr(openai, "DefaultAioHttpClient"):
        with contextlib.suppress(RuntimeError):  # raised when the aiohttp extra is not installed
            return openai.DefaultAioHttpClient(**kwargs)
    return getattr(openai, default)(**kwargs)


def _error_message(e) -> str:
    body = getattr(e, "body", None)
    if isinstance(body, dict):
        inner = body.get("error", body)
        if isinstance(inner, dict) and inner.get("message"):
            return str(inner["message"])
    return str(getattr(e, "message", e))


def _refused(e: BaseException) -> bool:
    while e is not None:
        if isinstance(e, ConnectionRefusedError):
            return True
        e = e.__cause__ or e.__context__
    return False


def display_url(url: str) -> str:
    """`url` without the user name and password it may carry, for messages."""
    parts = urlparse(url)
    if not (parts.username or parts.password):
        return url
    return parts._replace(netloc=parts.hostname + (f":{parts.port}" if parts.port else "")).geturl()


def _is_openai(base_url: str | None) -> bool:
    return not base_url or urlparse(base_url).hostname == "api.openai.com"


def estimate_tokens(messages: list[dict]) -> int:
    """About four characters a token, plus a few tokens of framing per message (good enough for limits and
    cost estimates; the server reports the real counts)."""
    return sum(len(m["content"]) // 4 + 4 for m in messages) + 2


def api_key_from(variable: str) -> str | None:
    return os.environ.get(variable) or None


# --------------------------------------------------------------------------------------------- local


@dataclass
class _Pending:
    prompt: str
    prefix: str
    params: GenParams
    future: asyncio.Future


class LocalBackend(Backend):
    """A local causal LM; requests made concurrently are generated together in batches of `batch_size`."""

    kind = "local"

    def __init__(self, model: str = DEFAULT_LOCAL_MODEL, batch_size: int = 8, threads: int = 0):
        super().__init__(model)
        import torch
        from transformers import AutoTokenizer

        from oncerec.lm.backbone import load_base_model
        from oncerec.lm.packaged import resolve_model_path

        path = resolve_model_path(model)
        self.tokenizer = AutoTokenizer.from_pretrained(str(path), local_files_only=True)
        self.tokenizer.padding_side = "left"  # generation continues from the right end of every row
        if self.tokenizer.pad_token is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        if getattr(self.tokenizer, "chat_template", None) is None:
            raise OncerecError(
                f"local model `{model}`: its tokenizer has no chat template (use an instruct model)"
            )
        self.lm = load_base_model(str(path), torch.float32, auto="AutoModelForCausalLM").eval()
        self.batch_size = batch_size
        self.threads = threads
        self.pending: list[_Pending] = []
        self._wake: asyncio.Event | None = None
        self._worker: asyncio.Task | None = None
        logger.info(f"local model {model} ({path}), batches of {batch_size}")

    async def complete(self, messages: list[dict], params: GenParams, prefix: str = "") -> Completion:
        loop = asyncio.get_running_loop()
        if self._worker is None:
            self._wake = asyncio.Event()
            self._worker = loop.create_task(self._batches())
        prompt = self.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        pending = _Pending(prompt + prefix, prefix, params, loop.create_future())
        self.pending.append(pending)
        self._wake.set()
        return await pending.future

    async def _batches(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            # Workers whose answers just arrived send their next request right away: give them a moment
            # to join this batch instead of generating a batch of one.
            for _ in range(10):
                if len(self.pending) >= self.batch_size:
                    break
                await asyncio.sleep(0.002)
            self.pending = [p for p in self.pending if not p.future.done()]  # cancelled meanwhile
            if not self.pending:
                continue
            params = self.pending[0].params
            batch = [p for p in self.pending if p.params == params][: self.batch_size]
            taken = {id(p) for p in batch}
            self.pending = [p for p in self.pending if id(p) not in taken]
            try:
                results = await asyncio.to_thread(self._generate, batch, params)
            except Exception as e:  # a model failure (out of memory, ...) ends the run, it is not an answer
                error = FatalError(f"local model {self.model} failed: {type(e).__name__}: {e}")
                for p in batch:
                    if not p.future.done():
                        p.future.set_exception(error)
                continue
            for p, r in zip(batch, results, strict=True):
                if not p.future.done():
                    p.future.set_result(r)
            if self.pending:
                self._wake.set()

    def _generate(self, batch: list[_Pending], params: GenParams) -> list[Completion]:
        import torch

        before = torch.get_num_threads()
        if self.threads:
            torch.set_num_threads(self.threads)
        try:
            return self._generate_batch(batch, params)
        finally:
            torch.set_num_threads(before)  # the setting is the process's: leave it as it was

    def _generate_batch(self, batch: list[_Pending], params: GenParams) -> list[Completion]:
        import torch

        tok = self.tokenizer
        enc = tok([p.prompt for p in batch], return_tensors="pt", padding=True, add_special_tokens=False)
        width = enc["input_ids"].shape[1]
        stop = _JsonClosed(tok, [p.prefix for p in batch], width)
        sampling = {"do_sample": True, "temperature": params.temperature} if params.temperature > 0 else {}
        with torch.no_grad():
            out = self.lm.generate(
                **enc,
                max_new_tokens=params.max_tokens,
                pad_token_id=tok.pad_token_id,
                stopping_criteria=[stop],
                do_sample=bool(sampling),
                **{k: v for k, v in sampling.items() if k != "do_sample"},
            )
        results = []
        ends = {tok.eos_token_id, tok.pad_token_id}
        for row, p in enumerate(batch):
            new = out[row, width:].tolist()
            n = next((i + 1 for i, t in enumerate(new) if t in ends), len(new))
            text = p.prefix + tok.decode(new[:n], skip_special_tokens=True)
            results.append(Completion(text, int(enc["attention_mask"][row].sum()), n))
        return results

    async def aclose(self) -> None:
        if self._worker is not None:
            self._worker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._worker
            self._worker = None


class _JsonClosed:
    """Stops each row of a batch once the JSON object of its answer (prefix + generated text) is complete:
    what follows would be dropped anyway, and small models tend to ramble on."""

    def __init__(self, tokenizer, prefixes: list[str], width: int):
        self.tokenizer, self.prefixes, self.width = tokenizer, prefixes, width
        self.closed = [False] * len(prefixes)

    def __call__(self, input_ids, scores, **kwargs):
        import torch

        for row, prefix in enumerate(self.prefixes):
            if not self.closed[row]:
                text = prefix + self.tokenizer.decode(input_ids[row, self.width :], skip_special_tokens=True)
                self.closed[row] = json_object_span(text) is not None
        return torch.tensor(self.closed, dtype=torch.bool, device=input_ids.device)
