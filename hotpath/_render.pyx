# cython: language_level=3
"""Compiled renderer of iPXE scripts (twin: hotpath/_render_py.py).

Runs when data changes, not per request, except for the small wait script
of unknown nodes and the first render for a new Host or retry count.
Keep byte-for-byte in step with the twin: tests/test_render.py checks it.

Nothing stored can add a line or a command to a script.  The admin API
refuses unsafe values when they are written; this renderer refuses them
again, for rows that got into the database some other way (plain SQL, an
older version).  A node whose script would need such a value gets the
wait-and-retry script instead of a kernel (see render_bootscript): no value
is ever escaped, dropped or guessed at.  The rules are core.identity's:
a node variable is one word of BOOT_TOKEN_CHARS; the filled kernel and initrd
URIs are one printable word; the filled command line is printable, with no
word that ends an iPXE command (`||`, `&&`, `;`, `#...`).
"""

from cpython.unicode cimport Py_UNICODE_ISPRINTABLE

from core.templates import SCRIPT_SLOTS

# A profile's script (core/templates.py) holds these where the request decides the value.
cdef str SLOT_KERNEL = SCRIPT_SLOTS["kernel"]
cdef str SLOT_INITRD = SCRIPT_SLOTS["initrd"]
cdef str SLOT_PARAMS = SCRIPT_SLOTS["params"]
cdef str SLOT_BASE_URL = SCRIPT_SLOTS["baseUrl"]
cdef str SLOT_SEED_URL = SCRIPT_SLOTS["seedUrl"]

# Node variables a stored kernel, initrd or cmdline may name as {{name}}, in the
# order of the values tuple each index entry keeps (a tuple is far smaller than
# a dict per node; the dict is built only when a script is rendered).
VARIABLE_NAMES = ("id", "nid", "role", "subRole", "hostname", "arch", "type", "rack", "unit", "slot", "group",
                  "groups")


cpdef dict node_variables(tuple values, str mac):
    cdef dict variables = dict(zip(VARIABLE_NAMES, values))
    variables["mac"] = mac
    return variables


cpdef str fill_variables(str template, dict variables):
    """Replace `{{ name }}` with variables[name]; unknown names stay as written."""
    return _fill(template, variables, None)


cdef str _fill(str template, dict variables, list refused):
    """fill_variables; the names of filled values that are not boot tokens go to `refused`."""
    cdef Py_ssize_t start = 0
    cdef Py_ssize_t open_at, close_at
    cdef list out
    cdef object value
    cdef str name
    if template.find("{{") < 0:
        return template
    out = []
    while True:
        open_at = template.find("{{", start)
        if open_at < 0:
            break
        close_at = template.find("}}", open_at + 2)
        if close_at < 0:
            break
        name = template[open_at + 2:close_at].strip()
        value = variables.get(name)
        if value is not None and refused is not None and not _is_token(value):
            refused.append(name)
        out.append(template[start:open_at])
        out.append(template[open_at:close_at + 2] if value is None else value)
        start = close_at + 2
    out.append(template[start:])
    return "".join(out)


cdef inline bint _token_char(Py_UCS4 ch):
    # core.identity.BOOT_TOKEN_CHARS
    return (("a" <= ch <= "z") or ("A" <= ch <= "Z") or ("0" <= ch <= "9") or ch == "." or ch == "_"
            or ch == ":" or ch == "/" or ch == "@" or ch == "+" or ch == "=" or ch == "," or ch == "%"
            or ch == "~" or ch == "-")


cdef bint _is_token(str value):
    cdef Py_UCS4 ch
    for ch in value:
        if not _token_char(ch):
            return False
    return True


cdef inline bint _ends_command(str text, Py_ssize_t start, Py_ssize_t end):
    # core.identity.IPXE_COMMAND_ENDS, or a comment
    cdef Py_ssize_t length = end - start
    if length == 0:
        return False
    if text[start] == "#":
        return True
    if length == 1:
        return text[start] == ";"
    if length == 2:
        return (text[start] == "|" and text[start + 1] == "|") or (text[start] == "&" and text[start + 1] == "&")
    return False


cdef bint _safe_text(str text, bint one_word):
    """core.identity.boot_text_problem(text, one_word=...) is None, in one pass."""
    cdef Py_ssize_t i
    cdef Py_ssize_t start = 0
    cdef Py_ssize_t length = len(text)
    cdef Py_UCS4 ch
    cdef bint ok = True
    for i in range(length):
        ch = text[i]
        if ch == " ":
            if one_word or _ends_command(text, start, i):
                ok = False
            start = i + 1
        elif (ch < 0x21 or ch > 0x7e) and not Py_UNICODE_ISPRINTABLE(ch):
            return False
    return ok and not _ends_command(text, start, length)


cdef bint _has_arg(str cmdline, str prefix):
    cdef str token
    for token in cmdline.split():
        if token.startswith(prefix):
            return True
    return False


cpdef int retry_delay(int retry, double base, double cap):
    """Seconds to sleep before retry number `retry` (0-based): doubling, capped."""
    cdef double delay = base
    cdef int i
    for i in range(retry if retry < 64 else 64):
        delay = delay * 2
        if delay >= cap:
            break
    if delay > cap:
        delay = cap
    if delay < 1:
        return 1
    return <int>(delay + 0.999999)


cpdef int next_retry(int retry, double base, double cap):
    """The retry number to chain with; it stops growing once the delay is capped."""
    if retry < 0:
        retry = 0
    if retry_delay(retry, base, cap) >= retry_delay(retry + 1, base, cap):
        return retry
    return retry + 1


cpdef str kernel_cmdline(str cmdline, bint has_initrd, str mac, str seed_url):
    """The stored cmdline plus initrd=, BOOTIF= and the cloud-init seed, unless already there."""
    cdef list extra = []
    if has_initrd and not _has_arg(cmdline, "initrd="):
        extra.append("initrd=initrd")
    if mac and not _has_arg(cmdline, "BOOTIF="):
        extra.append("BOOTIF=01-" + mac.replace(":", "-"))
    if seed_url and not _has_arg(cmdline, "ds="):
        extra.append("ds=nocloud-net;s=" + seed_url)
    if not extra:
        return cmdline
    if cmdline:
        return cmdline + " " + " ".join(extra)
    return " ".join(extra)


cpdef bytes render_bootscript(str kernel, str initrd, str cmdline, tuple values, str node_id,
                              str mac, str chain_query, str base_url, int retry,
                              double retry_base, double retry_max, str seed_token="", bint signed=False,
                              str script=None):
    """The iPXE script of a node that has boot parameters.

    The cloud-init seed URL is `<base_url>/cloud-init/<node_id>/<seed_token>/`
    (`.../<node_id>/` without a token: the node then proves itself by address).
    When a filled-in value is not safe in a script (see the module docstring)
    the node gets the wait-and-retry script instead: an `echo` naming what is
    wrong (`{{hostname}}`, `cmdline` ...) but never the value itself, then
    `sleep` and `chain` back here with the usual back-off, so the node boots
    as soon as the data is fixed.

    `signed` (scripts signed for imgverify): where the script would `chain`
    back here it does `exit 1` instead, back to the signed boot.ipxe, which
    fetches the script again and runs it only once it verifies; a chain from
    here would run whatever answered, unverified.
    """
    cdef dict variables = node_variables(values, mac)
    cdef list refused = []
    cdef str kernel_uri = _fill(kernel, variables, refused)
    cdef str initrd_uri = _fill(initrd, variables, refused)
    cdef str seed_url = base_url + "/cloud-init/" + node_id + "/"
    if seed_token:
        seed_url = seed_url + seed_token + "/"
    cdef str args = kernel_cmdline(_fill(cmdline, variables, refused), len(initrd_uri) > 0, mac, seed_url)
    cdef str reason = None
    if refused:
        reason = "{{" + refused[0] + "}}"
    elif not _safe_text(kernel_uri, True):
        reason = "boot parameter kernel"
    elif not _safe_text(initrd_uri, True):
        reason = "boot parameter initrd"
    elif not _safe_text(args, False):
        reason = "boot parameter cmdline"
    if reason is not None:
        reason = (("node " + node_id if _is_token(node_id) else "this node") + " cannot boot: " + reason
                  + " is not safe in a boot script (fix it through the admin API)")
        if signed:
            return _verified_wait(reason, retry_delay(retry, retry_base, retry_max))
        return render_wait_script(reason, chain_query + "&retry=" + str(next_retry(retry, retry_base, retry_max)),
                                  base_url, retry_delay(retry, retry_base, retry_max))
    cdef list lines
    if script is None:
        lines = ["#!ipxe"]
        lines.append("kernel --name kernel " + kernel_uri + (" " + args if args else "") + " || goto retry")
        if initrd_uri:
            lines.append("initrd --name initrd " + initrd_uri + " || goto retry")
        lines.append("boot || goto retry")
    else:
        lines = [_filled_script(script, kernel_uri, initrd_uri, args, base_url, seed_url)]
    lines.append(":retry")
    lines.append("sleep " + str(retry_delay(retry, retry_base, retry_max)))
    if signed:
        lines.append("exit 1")
    else:
        lines.append("chain " + base_url + "/boot/v1/bootscript?" + chain_query + "&retry="
                     + str(next_retry(retry, retry_base, retry_max)))
    return ("\n".join(lines) + "\n").encode("utf-8")


cdef str _filled_script(str script, str kernel_uri, str initrd_uri, str args, str base_url, str seed_url):
    """A profile's script (core/templates.py) with its slots filled in; the boot path's :retry follows it."""
    script = (script.replace(SLOT_KERNEL, kernel_uri).replace(SLOT_INITRD, initrd_uri).replace(SLOT_PARAMS, args)
              .replace(SLOT_BASE_URL, base_url).replace(SLOT_SEED_URL, seed_url))
    return script[:len(script) - 1] if script.endswith("\n") else script


cdef bytes _verified_wait(str message, int delay):
    """render_wait_script for a signed script: it waits, then returns to boot.ipxe instead of chaining."""
    return ("#!ipxe\necho Chamicore: " + message + "; asking again in " + str(delay) + " s\n"
            + "sleep " + str(delay) + "\nexit 1\n").encode("utf-8")


cpdef bytes render_wait_script(str message, str chain_query, str base_url, int delay):
    """What a node gets while it cannot boot yet: wait, then ask again."""
    return ("#!ipxe\necho Chamicore: " + message + "; asking again in " + str(delay) + " s\n"
            + "sleep " + str(delay) + "\n"
            + "chain " + base_url + "/boot/v1/bootscript?" + chain_query + "\n").encode("utf-8")


cpdef bytes render_first_stage(str base_url):
    """boot.ipxe: tries every network device in turn, then asks for its own script."""
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


cpdef bytes render_first_stage_signed(str base_url):
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
