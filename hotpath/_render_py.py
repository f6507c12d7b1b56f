"""Pure-Python twin of hotpath/_render.pyx, for tests that prove identical output.

Not imported by the running server.  Keep it line-for-line in step with the
compiled module; tests/test_render.py compares the two on generated input.
What is safe in a script is core.identity's rule, used here as it stands.
"""

from core.identity import boot_text_problem, is_boot_token
from core.templates import SCRIPT_SLOTS

SLOT_KERNEL, SLOT_INITRD, SLOT_PARAMS, SLOT_BASE_URL, SLOT_SEED_URL = (
    SCRIPT_SLOTS[name] for name in ("kernel", "initrd", "params", "baseUrl", "seedUrl"))

VARIABLE_NAMES = ("id", "nid", "role", "subRole", "hostname", "arch", "type", "rack", "unit", "slot", "group",
                  "groups")


def node_variables(values: tuple, mac: str) -> dict:
    variables = dict(zip(VARIABLE_NAMES, values, strict=False))
    variables["mac"] = mac
    return variables


def fill_variables(template: str, variables: dict) -> str:
    return _fill(template, variables, None)


def _fill(template: str, variables: dict, refused: list | None) -> str:
    if template.find("{{") < 0:
        return template
    out = []
    start = 0
    while True:
        open_at = template.find("{{", start)
        if open_at < 0:
            break
        close_at = template.find("}}", open_at + 2)
        if close_at < 0:
            break
        name = template[open_at + 2 : close_at].strip()
        value = variables.get(name)
        if value is not None and refused is not None and not is_boot_token(value):
            refused.append(name)
        out.append(template[start:open_at])
        out.append(template[open_at : close_at + 2] if value is None else value)
        start = close_at + 2
    out.append(template[start:])
    return "".join(out)


def _has_arg(cmdline: str, prefix: str) -> bool:
    return any(token.startswith(prefix) for token in cmdline.split())


def retry_delay(retry: int, base: float, cap: float) -> int:
    delay = base
    for _ in range(min(retry, 64)):
        delay = delay * 2
        if delay >= cap:
            break
    delay = min(delay, cap)
    if delay < 1:
        return 1
    return int(delay + 0.999999)


def next_retry(retry: int, base: float, cap: float) -> int:
    retry = max(retry, 0)
    if retry_delay(retry, base, cap) >= retry_delay(retry + 1, base, cap):
        return retry
    return retry + 1


def kernel_cmdline(cmdline: str, has_initrd: bool, mac: str, seed_url: str) -> str:
    extra = []
    if has_initrd and not _has_arg(cmdline, "initrd="):
        extra.append("initrd=initrd")
    if mac and not _has_arg(cmdline, "BOOTIF="):
        extra.append("BOOTIF=01-" + mac.replace(":", "-"))
    if seed_url and not _has_arg(cmdline, "ds="):
        extra.append("ds=nocloud-net;s=" + seed_url)
    if not extra:
        return cmdline
    return cmdline + " " + " ".join(extra) if cmdline else " ".join(extra)


def render_bootscript(kernel, initrd, cmdline, values, node_id, mac, chain_query, base_url, retry,
                      retry_base, retry_max, seed_token="", signed=False, script=None) -> bytes:
    variables = node_variables(values, mac)
    refused: list = []
    kernel_uri = _fill(kernel, variables, refused)
    initrd_uri = _fill(initrd, variables, refused)
    seed_url = base_url + "/cloud-init/" + node_id + "/"
    if seed_token:
        seed_url = seed_url + seed_token + "/"
    args = kernel_cmdline(_fill(cmdline, variables, refused), len(initrd_uri) > 0, mac, seed_url)
    reason = None
    if refused:
        reason = "{{" + refused[0] + "}}"
    elif boot_text_problem(kernel_uri, one_word=True):
        reason = "boot parameter kernel"
    elif boot_text_problem(initrd_uri, one_word=True):
        reason = "boot parameter initrd"
    elif boot_text_problem(args, one_word=False):
        reason = "boot parameter cmdline"
    if reason is not None:
        reason = (("node " + node_id if is_boot_token(node_id) else "this node") + " cannot boot: " + reason
                  + " is not safe in a boot script (fix it through the admin API)")
        if signed:
            return _verified_wait(reason, retry_delay(retry, retry_base, retry_max))
        return render_wait_script(reason, chain_query + "&retry=" + str(next_retry(retry, retry_base, retry_max)),
                                  base_url, retry_delay(retry, retry_base, retry_max))
    if script is None:
        lines = ["#!ipxe", "kernel --name kernel " + kernel_uri + (" " + args if args else "") + " || goto retry"]
        if initrd_uri:
            lines.append("initrd --name initrd " + initrd_uri + " || goto retry")
        lines.append("boot || goto retry")
    else:
        lines = [_filled_script(script, kernel_uri, initrd_uri, args, base_url, seed_url)]
    lines += [
        ":retry",
        "sleep " + str(retry_delay(retry, retry_base, retry_max)),
        "exit 1" if signed else "chain " + base_url + "/boot/v1/bootscript?" + chain_query + "&retry="
        + str(next_retry(retry, retry_base, retry_max)),
    ]
    return ("\n".join(lines) + "\n").encode("utf-8")


def _filled_script(script: str, kernel_uri: str, initrd_uri: str, args: str, base_url: str, seed_url: str) -> str:
    script = (script.replace(SLOT_KERNEL, kernel_uri).replace(SLOT_INITRD, initrd_uri).replace(SLOT_PARAMS, args)
              .replace(SLOT_BASE_URL, base_url).replace(SLOT_SEED_URL, seed_url))
    return script[:-1] if script.endswith("\n") else script


def _verified_wait(message: str, delay: int) -> bytes:
    return ("#!ipxe\necho Chamicore: " + message + "; asking again in " + str(delay) + " s\n"
            + "sleep " + str(delay) + "\nexit 1\n").encode("utf-8")


def render_wait_script(message: str, chain_query: str, base_url: str, delay: int) -> bytes:
    return ("#!ipxe\necho Chamicore: " + message + "; asking again in " + str(delay) + " s\n"
            + "sleep " + str(delay) + "\n"
            + "chain " + base_url + "/boot/v1/bootscript?" + chain_query + "\n").encode("utf-8")


def render_first_stage(base_url: str) -> bytes:
    return ("#!ipxe\n"
            "# Chamicore first stage: served to DHCP clients, chains to the per-node script.\n"
            "chain --autofree " + base_url + "/boot/v1/bootscript?mac=${mac:hexhyp}"
            "&arch=${buildarch}&uuid=${uuid} || goto devices\n"
            ":devices\n"
            "set idx:int32 0\n"
            ":loop\n"
            "isset ${net${idx}/mac} || goto exhausted\n"
            "ifconf --configurator dhcp net${idx} || goto next\n"
            "chain --autofree " + base_url + "/boot/v1/bootscript?mac=${net${idx}/mac:hexhyp}"
            "&arch=${buildarch}&uuid=${uuid} || goto next\n"
            ":next\n"
            "inc idx\n"
            "goto loop\n"
            ":exhausted\n"
            "echo Chamicore: no network device could boot; retrying in 10 s\n"
            "sleep 10\n"
            "set idx:int32 0\n"
            "goto loop\n").encode("utf-8")


def render_first_stage_signed(base_url: str) -> bytes:
    """boot.ipxe when scripts are signed: fetches a node's script and runs it only once `imgverify`
    accepts its signature (bootscript.sig, same query); anything else moves on to the next device."""
    return ("#!ipxe\n"
            "# Chamicore first stage, signed scripts: runs a node's script only once imgverify accepts it.\n"
            "set query mac=${mac:hexhyp}&arch=${buildarch}&uuid=${uuid}\n"
            "set resume devices\n"
            "goto verified\n"
            ":devices\n"
            "set idx:int32 0\n"
            ":loop\n"
            "isset ${net${idx}/mac} || goto exhausted\n"
            "ifconf --configurator dhcp net${idx} || goto next\n"
            "set query mac=${net${idx}/mac:hexhyp}&arch=${buildarch}&uuid=${uuid}\n"
            "set resume next\n"
            "goto verified\n"
            ":next\n"
            "inc idx\n"
            "goto loop\n"
            ":exhausted\n"
            "echo Chamicore: no network device got a script whose signature verifies; retrying in 10 s\n"
            "sleep 10\n"
            "set idx:int32 0\n"
            "goto loop\n"
            ":verified\n"
            "imgfetch --name script " + base_url + "/boot/v1/bootscript?${query} || goto ${resume}\n"
            "imgverify script " + base_url + "/boot/v1/bootscript.sig?${query} || goto refused\n"
            "imgexec --autofree script || goto ${resume}\n"
            "goto ${resume}\n"
            ":refused\n"
            "imgfree script\n"
            "goto ${resume}\n").encode("utf-8")
