from typing import Any

CT_TEXT: int
CT_PROBLEM: int
CT_JSON: int
CT_EFI: int
CT_SIGNATURE: int
EP_BOOTSCRIPT: int
EP_FIRST_STAGE: int
EP_CLOUD_INIT: int
EP_OTHER: int
OUT_OK: int
OUT_WAIT: int
OUT_BAD_REQUEST: int
OUT_NOT_FOUND: int
OUT_NEEDS_CLIENT_IP: int
MAX_RETRY: int
MAX_CACHED_VARIANTS: int

Answer = tuple[int, int, bytes, str | None, int, int]

def normalize_mac(value: str) -> str | None: ...
def parse_query(query: str) -> dict[str, str]: ...

class Dispatcher:
    index: Any
    base_url: str | None
    fallback_base: str
    retry_base: float
    retry_max: float
    unknown_delay: int
    scheme: str
    files: dict[str, bytes]
    signer: Any
    def __init__(self, index: Any, base_url: str | None, fallback_base: str, retry_base: float,
                 retry_max: float, unknown_delay: float, scheme: str = "http://",
                 files: dict[str, bytes] | None = None) -> None: ...
    def base_for(self, host: str) -> str: ...
    def dispatch(self, path: str, query: str, host: str) -> Answer: ...
    def cloud_init_by_ip(self, client_ip: str, path: str) -> Answer: ...
    def first_stage(self, base: str) -> bytes: ...
    def first_stage_signature(self, base: str) -> Answer: ...
    def script_signature(self, query: str, host: str) -> Answer: ...
    def bootscript(self, query: str, host: str) -> Answer: ...
