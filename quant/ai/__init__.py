"""AI news analysis for signals: a versioned prompt, Gemini and an offline fallback.

An :class:`Analyzer` turns an :class:`AnalysisRequest` (instrument, trade date, the scan's
signal, recent candles, investor flows and news) into an :class:`AnalysisOutcome`: a validated
:class:`Analysis` (sentiment, catalyst, risk flags, confidence and the 0–3 news score of
closing-price betting, ``domain.md`` §3) plus provenance (analyzer, model, prompt version,
tokens, latency).

* :class:`GeminiAnalyzer` — one Gemini ``generateContent`` call, JSON-schema constrained, no
  retries of its own; failures map onto :mod:`quant.errors` (429 → ``RateLimited``, 5xx and
  timeouts → ``ServiceUnavailable``, other 4xx → :class:`AiRequestRejected`, unusable output →
  :class:`InvalidAiOutput`).
* :class:`OfflineAnalyzer` — deterministic keyword rules over the same inputs; labelled
  ``"offline"`` / ``"offline-rules-v1"`` / ``"[offline] …"``.
* :func:`build_prompt` — the deterministic prompt, tagged :data:`PROMPT_VERSION`.

Pure domain code: no Celery, no database, no environment reads; the API key, model and
endpoint are passed in.
"""

from quant.ai.errors import AiRequestRejected, InvalidAiOutput
from quant.ai.gemini import GeminiAnalyzer
from quant.ai.models import Analysis, AnalysisOutcome, AnalysisRequest, Analyzer, NewsInput
from quant.ai.offline import OfflineAnalyzer
from quant.ai.prompt import PROMPT_VERSION, build_prompt

__all__ = [
    "PROMPT_VERSION",
    "AiRequestRejected",
    "Analysis",
    "AnalysisOutcome",
    "AnalysisRequest",
    "Analyzer",
    "GeminiAnalyzer",
    "InvalidAiOutput",
    "NewsInput",
    "OfflineAnalyzer",
    "build_prompt",
]
