"""The request and response bodies of ``gen-emotion serve`` (its OpenAPI schema at /docs) and its JSON errors.

The bodies are made inside ``schemas()`` so that pydantic (and fastapi) are imported by ``serve`` only."""

from typing import Any


def lone_surrogate(text: str) -> int | None:
    """Where ``text`` holds a lone surrogate (``"\\ud800 hi"`` decoded by ``json.loads``), or None."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as err:
        return err.start
    return None


def schemas() -> tuple[type, type, type, type]:
    """``PredictRequest``, ``PredictResponse``, ``Health`` and ``ErrorBody``."""
    from typing import Annotated

    from pydantic import AfterValidator, BaseModel, ConfigDict, Field
    from pydantic_core import PydanticCustomError

    def valid_text(text: str) -> str:
        """A text every tokenizer can take: checked here, before batching, so one bad text never reaches the
        model call that other requests share."""
        at = lone_surrogate(text)
        if at is not None:
            raise PydanticCustomError(
                "lone_surrogate",
                "not valid Unicode: a lone surrogate U+{code} at character {at}; send the text as UTF-8",
                {"code": f"{ord(text[at]):04X}", "at": at},
            )
        return text

    Text = Annotated[str, AfterValidator(valid_text)]  # noqa: N806 (a type)

    class PredictRequest(BaseModel):
        model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{"texts": ["What a day!"]}]})

        texts: list[Text] = Field(min_length=1, description="the texts to label (at most --max-texts of them)")
        run: str | None = Field(
            None, description="the served run to ask, by its name (GET /v1/models); needed where several are served"
        )

    class Prediction(BaseModel):
        labels: list[str] = Field(description="the labels the folder decides, in the folder's label order")
        probabilities: dict[str, float] | None = Field(
            None, description="each label's probability, where the folder has them (else null)"
        )
        output: str | None = Field(None, description="the generated text, for a generation run (else null)")

    class PredictResponse(BaseModel):
        predictions: list[Prediction] = Field(description="one per text, in the request's order")

    class Health(BaseModel):
        status: str = Field(description="ok, loading, restarting, dead or failed (without the key: status only)")
        folder: str | None = None
        runs: list[str] | None = Field(None, description="the runs served, where several share one engine")
        kind: str | None = Field(None, description="run, cv or ensemble, once loaded")
        labels: list[str] | None = None
        has_probabilities: bool | None = None
        generates: bool | None = None
        model_calls: int | None = Field(None, description="model calls made so far (requests share them)")
        restarts: int | None = Field(None, description="times a dead model worker was restarted")
        error: str | None = Field(None, description="why it failed to load, or why the worker is dead")

    class ErrorBody(BaseModel):
        error: str = Field(description="what was wrong, in one line")

    return PredictRequest, PredictResponse, Health, ErrorBody


def error(status: int, message: str, headers: dict[str, str] | None = None) -> Any:
    """The JSON error answer: ``{"error": message}``."""
    from starlette.responses import JSONResponse

    return JSONResponse({"error": message}, status_code=status, headers=headers)


def _where(loc: tuple[Any, ...]) -> str:
    """A validation error's location as a field path: ``("body", "texts", 3)`` -> ``texts[3]``."""
    path = ""
    for part in loc[1:] if loc and loc[0] == "body" else loc:
        path += f"[{part}]" if isinstance(part, int) else f".{part}" if path else str(part)
    return path or "body"


def validation_message(errors: list[dict[str, Any]]) -> str:
    """pydantic's errors as one line naming the fields."""
    first = errors[0]
    if first.get("type") == "json_invalid":
        reason = (first.get("ctx") or {}).get("error", "")
        return f"the body is not valid JSON ({reason} at character {first['loc'][-1]})"
    if tuple(first["loc"]) == ("body",):
        return 'the body must be a JSON object {"texts": [...]} sent as Content-Type: application/json'
    return "; ".join(f"{_where(tuple(e['loc']))}: {e['msg']}" for e in errors[:3]) + ("; ..." if errors[3:] else "")
