"""Every field the HTTP ingress reads from a request, with its bounds and its description, and the
body of each endpoint: the ingress reads each field through its spec and refuses fields its
endpoint does not take, and the OpenAPI schema is built from the same specs, so the documentation
cannot drift from what is enforced."""

from ops.decode.selective_decoding import STRATEGIES
from pipelines.serve.request_fields import (
    ChoiceField,
    FlagField,
    FloatField,
    IntField,
    RequestBody,
    TextField,
    TextListField,
)

MAX_CANDIDATES = 256  # labels or answers ranked in one request
MAX_TEXTS = 256  # texts embedded in one request
MAX_QUERY_TOKENS = 512  # the predictor's query length (the limit); counted with its tokenizer
MAX_BEAMS = 8

QUERY = TextField(name="query", required=False, description=(
    f"the question or instruction the prediction is conditioned on, at most {MAX_QUERY_TOKENS} tokens; "
    "default: the model's captioning prompt"))
QUESTION = TextField(name="question", description=f"the question, at most {MAX_QUERY_TOKENS} tokens")
TEXTS = TextListField(name="texts", limit=MAX_TEXTS, description="texts to embed with the y-encoder")
LABELS = TextListField(name="labels", limit=MAX_CANDIDATES, description="candidate labels to rank")
CANDIDATES = TextListField(name="candidates", limit=MAX_CANDIDATES, description="candidate answers to rank")
ITEM_ID = TextField(name="id", description="the item's id in the index; adding an existing id replaces it")
SEARCH = TextField(name="query", description="the text to find videos (and images) for")
TOP_K = IntField(name="k", default=10, low=1, high=1000, description="how many results")
OFFSET = IntField(name="offset", default=0, low=0, high=10**9, description="items to skip")
LIMIT = IntField(name="limit", default=1000, low=1, high=10_000, description="items per page")
PREFIX = TextField(name="prefix", required=False, description=(
    "only items whose id starts with this: one feature cache's videos are `<cache name>/`"))
PROBE = IntField(name="probe", default=None, low=1, high=1_000_000, description=(
    "IVF partitions of the ANN index a search scans, at most the index's partitions (422 above): more finds "
    "more of the true nearest items and costs more; default: the server's `--index-probe`; ignored by an "
    "index without an ANN index (exact search)"))
BEAMS = IntField(name="beams", default=1, low=1, high=MAX_BEAMS, description="beam width; 1 is greedy decoding")

# /v1/stream: the window grid, then how segments are chosen (the flags of `vljepa stream`)
WINDOW = FloatField(name="window", default=2.0, low=0.1, high=60.0, description="seconds of video per window")
STRIDE = FloatField(name="stride", default=0.5, low=0.05, high=60.0, description="seconds between window starts")
STRATEGY = ChoiceField(name="strategy", choices=tuple(STRATEGIES), default="adaptive", description=(
    "adaptive: Ward segmentation of the embedding stream; uniform: fixed-length segments; "
    "online: decode when the local variance exceeds `threshold`"))
SEGMENTS = IntField(name="segments", default=None, low=1, high=10_000, description=(
    "segments to decode, one text each; default: one per `seconds_per_decode` of video"))
SECONDS_PER_DECODE = FloatField(name="seconds_per_decode", default=4.0, low=0.1, high=3600.0,
                                description="without `segments`: the average seconds between decodes")
THRESHOLD = FloatField(name="threshold", default=0.1, low=0.0, high=4.0,
                       description="strategy online: the variance that triggers a decode")
ONLINE_WINDOW = IntField(name="online_window", default=4, low=2, high=1000,
                         description="strategy online: the windows whose variance is watched")
POOL = FlagField(name="pool", default=True, description=(
    "decode each segment's average embedding (true) or its midpoint window's (false)"))
# /v1/live (a WebSocket; these come in its query string): the feed's rate, then the online rule
FPS = FloatField(name="fps", default=None, low=0.1, high=240.0, description=(
    "frames per second of the live feed: frame n is at n / fps seconds"))

ANY_MEDIA = "an image (JPEG, PNG, WebP) or a video (MP4, WebM, MKV, AVI)"
VIDEO_ONLY = "a video (MP4, WebM, MKV, AVI)"

EMBED_TEXT = RequestBody(TEXTS)
EMBED_MEDIA = RequestBody(QUERY, media=ANY_MEDIA)
CLASSIFY = RequestBody(LABELS, QUERY, media=ANY_MEDIA)
VQA = RequestBody(QUESTION, CANDIDATES, media=ANY_MEDIA)
ADD_ITEM = RequestBody(ITEM_ID, media=ANY_MEDIA)
RETRIEVE = RequestBody(SEARCH, TOP_K, PREFIX, PROBE)
CAPTION = RequestBody(QUERY, BEAMS, media=ANY_MEDIA)
STREAM = RequestBody(WINDOW, STRIDE, STRATEGY, SEGMENTS, SECONDS_PER_DECODE, THRESHOLD, ONLINE_WINDOW, POOL, QUERY,
                     media=VIDEO_ONLY)
LIVE = RequestBody(FPS, WINDOW, STRIDE, THRESHOLD, ONLINE_WINDOW, POOL, QUERY)
LIST_ITEMS = RequestBody(OFFSET, LIMIT, PREFIX)  # query parameters: GET /v1/index/items?offset=&limit=&prefix=
