"""Which request paths reach the model, whatever the server in front of which govkit sits.

Read from the servers' own route tables: the OpenAI API, llama.cpp's llama-server
(tools/server/server.cpp), llama-cpp-python's server, Ollama (/api/...) and vLLM's OpenAI-compatible
server. A path is normalised first (percent-decoding, dot segments, repeated and trailing slashes,
case), so `/V1/./chat//completions/` is the route it reaches upstream: `/v1/chat/completions`.

Every inference route is audited; a short list of read-only routes (models, health, props,
version) is forwarded; anything else is refused. Forwarding more is the operator's explicit
choice (`govkit proxy --allow-route`), never the default.
"""

from __future__ import annotations

import posixpath
from urllib.parse import unquote

__all__ = ["INFERENCE_ROUTES", "READ_ONLY_ROUTES", "Route", "kind_of", "normalise_path", "route_of"]

# normalised path -> the kind of call, which says how its body and answer are read
INFERENCE_ROUTES: dict[str, str] = {
    # chat: OpenAI, llama-server (+ its Ollama and Anthropic shapes), Ollama
    "/v1/chat/completions": "chat", "/chat/completions": "chat", "/api/chat": "chat", "/v1/messages": "chat",
    # text completion: OpenAI, llama-server's native /completion and /infill, Ollama
    "/v1/completions": "completion", "/completions": "completion", "/completion": "completion",
    "/infill": "completion", "/api/generate": "completion",
    # the Responses API (OpenAI, llama-server, vLLM)
    "/v1/responses": "responses", "/responses": "responses",
    # embeddings: OpenAI, llama-server (legacy /embedding), Ollama (/api/embed, legacy /api/embeddings)
    "/v1/embeddings": "embedding", "/embeddings": "embedding", "/embedding": "embedding",
    "/api/embed": "embedding", "/api/embeddings": "embedding",
    # the model reads the content of these too: recorded whole (redacted), answer whole
    "/rerank": "other", "/reranking": "other", "/v1/rerank": "other", "/v1/reranking": "other",
    "/v2/rerank": "other", "/score": "other", "/v1/score": "other", "/pooling": "other",
    "/classify": "other", "/invocations": "other", "/v1/audio/transcriptions": "other",
    "/audio/transcriptions": "other", "/v1/audio/translations": "other",
    "/tokenize": "other", "/detokenize": "other", "/apply-template": "other", "/apply_template": "other",
    "/v1/messages/count_tokens": "other", "/extras/tokenize": "other", "/extras/detokenize": "other",
}

# (method, normalised path) forwarded without a record: they carry no prompt and run no model
READ_ONLY_ROUTES: frozenset[tuple[str, str]] = frozenset(
    [("GET", path) for path in ("/v1/models", "/models", "/health", "/v1/health", "/props", "/version",
                                "/api/version", "/api/tags", "/api/ps", "/ping")]
    + [("HEAD", path) for path in ("/health", "/v1/models", "/models")]
    + [("POST", "/api/show")])


class Route:
    """Where one request goes: `kind` for an audited call, `forward` for an allowed read-only
    route, neither for a refused one."""

    __slots__ = ("path", "kind", "forward", "method_allowed")

    def __init__(self, path: str, kind: str | None, forward: bool, method_allowed: bool = True):
        self.path, self.kind, self.forward, self.method_allowed = path, kind, forward, method_allowed


def normalise_path(raw: str) -> str:
    """The path a request names, as a server would route it: percent-decoded (repeatedly, so an
    encoded `%2e%2e` or `%2F` cannot hide a segment), dot segments resolved, repeated and
    trailing slashes dropped, lower case. The query is not part of it."""
    path = raw.split("?", 1)[0].split("#", 1)[0]
    for _ in range(4):  # %252e -> %2e -> .
        decoded = unquote(path)
        if decoded == path:
            break
        path = decoded
    path = path.replace("\\", "/")
    path = posixpath.normpath("/" + path)
    if path.startswith("//"):  # normpath keeps a leading double slash (POSIX allows it)
        path = "/" + path.lstrip("/")
    return path.lower()


def route_of(method: str, raw_path: str, allowed: frozenset[str] = frozenset()) -> Route:
    """Route a request; `allowed`: more normalised paths the operator chose to forward unaudited."""
    path = normalise_path(raw_path)
    kind = INFERENCE_ROUTES.get(path)
    if kind is not None:
        return Route(path, kind, False, method_allowed=method.upper() == "POST")
    if (method.upper(), path) in READ_ONLY_ROUTES or path in allowed:
        return Route(path, None, True)
    return Route(path, None, False)


def kind_of(path: str) -> str | None:
    """The audited kind of a client-side URL path, wherever the client mounts the API
    (…/v1/chat/completions): for the in-process transports, which see the whole URL path."""
    path = normalise_path(path)
    if path in INFERENCE_ROUTES:
        return INFERENCE_ROUTES[path]
    for route, kind in INFERENCE_ROUTES.items():
        if route.startswith("/v1/") and path.endswith(route[3:]):
            return kind
    return None
