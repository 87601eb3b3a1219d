"""Where our runtime answers a failure mode differently from coglet on purpose, and why.

Each entry is a case of `runtime_cases.py` whose answer differs from coglet's recorded one;
`tests/runtime/test_runtime_errors.py` fails on a difference not listed here, and on an entry whose
case no longer differs.
"""

from __future__ import annotations

_DEAD_WORKER = (
    "coglet keeps the dead worker's slot: /health-check says UNHEALTHY (its healthcheck "
    "channel closed) and every later prediction is refused 409 'At capacity', which tells a "
    "client to retry a server that will never answer again. Ours says DEFUNCT, Cog's state for "
    "a server whose worker is gone, and refuses predictions 503 naming how the worker died, so "
    "that whatever runs the server restarts it"
)

_CAUSE = (
    "the error begins with coglet's words; what follows is the cause as our HTTP client names "
    "it, where coglet's is its HTTP library's wording (reqwest's bare 'error sending request', "
    "or requests' repr of its retry state)"
)

ALLOWED: dict[str, str] = {
    "crash/health": _DEAD_WORKER,
    "crash/next-prediction": _DEAD_WORKER,
    "async/sysexit": (
        "sys.exit in an async predict() hangs coglet's worker: the request is never answered, "
        "and neither is any after it. Ours fails the prediction in coglet's words for any other "
        "failure of an async prediction"
    ),
    "output/missing-file": (
        "coglet answers a returned Path that does not exist with success and a null output, so "
        "the output is lost without a word. Ours fails the prediction, saying which file could "
        "not be read, in the form of coglet's other output errors"
    ),
    "upload/unreachable": _CAUSE,
    "input-file/unreachable": _CAUSE,
    "input-file/not-a-url": (
        "coglet hands the predictor the string itself for a Path input that is neither a URL "
        "nor a data URI (here predict() then fails on it, elsewhere it may read a local path "
        "the caller named); ours refuses the input, in coglet's words for a bad file input"
    ),
}
