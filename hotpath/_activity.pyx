# cython: language_level=3
"""Compiled record of what each node asked of the boot path (hotpath/telemetry.py): runs once per request.

One small object per node, found with one dict lookup, holds both things a
request leaves behind: its telemetry (the last endpoint, time and client,
and the requests since the node's row was last written) and its boot stages
since the last stage flush, six C doubles: [when a new boot began, the first
ipxe, script, kernel-booted, cloud-init, ready], 0 where absent.  The object
stays for the worker's life (it is also when the node's row was last
written), so a request allocates nothing; the nodes with something to write
are kept in two lists, appended to when a node first has something.  The
cyclic garbage collector does not track these objects.

The stage rules are telemetry._step's (bss.boot_stage_step's, within one
flush), spelled out for the cases a request can bring; tests/test_boot_stages.py
checks both against each other.
"""

cimport cython

cdef enum:  # a node's marks, in order (telemetry.STAGES from IPXE on)
    NEW_BOOT = 0
    IPXE = 1
    SCRIPT = 2
    KERNEL_BOOTED = 3
    CLOUD_INIT = 4
    READY = 5

NO_STAGE = -1  # a request that shows no boot stage (or stages are not recorded)


@cython.no_gc  # holds only strings and numbers: it cannot be part of a cycle
@cython.final
cdef class NodeActivity:
    """One node: its last request and the requests since its row was written, and its stage marks."""

    cdef readonly str node_id
    cdef readonly int endpoint
    cdef readonly double seen
    cdef readonly str client  # "ip:port" of the last request; None once written
    cdef readonly long long requests  # since the node's row was last written
    cdef public double written_at  # time.monotonic() of the last write, or -inf
    cdef bint staged  # has marks since the last stage flush
    cdef double at[6]

    def marks(self) -> list:
        return [self.at[0], self.at[1], self.at[2], self.at[3], self.at[4], self.at[5]]


cdef class ActivityRecorder:
    """Node id -> NodeActivity; `requested` and `staged` list the nodes with a row or marks to write."""

    cdef readonly dict nodes
    cdef public list requested
    cdef public list staged

    def __init__(self):
        self.nodes = {}
        self.requested = []
        self.staged = []

    cdef NodeActivity _node(self, str node_id):
        cdef NodeActivity node = self.nodes.get(node_id)
        if node is None:
            node = NodeActivity.__new__(NodeActivity)
            node.node_id = node_id
            node.written_at = float("-inf")
            self.nodes[node_id] = node
        return node

    cpdef void request(self, str node_id, int endpoint, double now, str client, int stage=NO_STAGE):
        """A boot request of the node; `stage` (IPXE .. READY) if it shows one."""
        cdef NodeActivity node = self._node(node_id)
        if node.requests == 0:
            self.requested.append(node)
        node.endpoint = endpoint
        node.seen = now
        node.client = client
        node.requests += 1
        if stage >= IPXE:
            self._mark(node, stage, now)

    cpdef void stage(self, str node_id, int stage, double now):
        """A request that shows `stage` (IPXE .. READY) of the node's boot but is not counted as a boot request
        (the first stage, by address; a phone-home)."""
        self._mark(self._node(node_id), stage, now)

    cdef void _mark(self, NodeActivity node, int stage, double now):
        cdef double* at = node.at
        if stage < IPXE or stage > READY:
            return
        if not node.staged:
            node.staged = True
            self.staged.append(node)
        if stage >= CLOUD_INIT or (stage == KERNEL_BOOTED and at[READY] == 0):
            pass  # forward, or again: no new boot
        elif (stage == KERNEL_BOOTED or at[READY] != 0 or at[CLOUD_INIT] != 0 or at[KERNEL_BOOTED] != 0
              or (stage == IPXE and at[SCRIPT] != 0)):  # a new boot: what came before belongs to the old one
            at[NEW_BOOT] = now
            at[IPXE] = at[SCRIPT] = at[KERNEL_BOOTED] = at[CLOUD_INIT] = at[READY] = 0
        if at[stage] == 0:
            at[stage] = now

    def take_due(self, double now, double interval, bint force) -> tuple:
        """The rows due for writing, as columns (ids, endpoints, clients, seen, requests), leaving those nodes with
        nothing pending: a node's row is due `interval` seconds after its last write (every row when `force`)."""
        cdef list waiting = [], ids = [], endpoints = [], clients = [], seen = [], counts = []
        cdef NodeActivity node
        for node in self.requested:
            if force or now - node.written_at >= interval:
                ids.append(node.node_id)
                endpoints.append(node.endpoint)
                clients.append(node.client)
                seen.append(node.seen)
                counts.append(node.requests)
                node.requests = 0
                node.client = None
            else:
                waiting.append(node)
        self.requested = waiting
        return ids, endpoints, clients, seen, counts

    def written(self, list ids, double stamp) -> None:
        cdef str node_id
        for node_id in ids:
            (<NodeActivity>self.nodes[node_id]).written_at = stamp

    def put_back(self, list ids, list endpoints, list clients, list seen, list counts) -> None:
        """Rows take_due gave that could not be written: pending again, under any newer request of the node."""
        cdef NodeActivity node
        cdef Py_ssize_t i
        for i in range(len(ids)):
            node = self._node(ids[i])
            if node.requests == 0:  # nothing newer: the row as it was
                self.requested.append(node)
                node.endpoint, node.seen, node.client = endpoints[i], seen[i], clients[i]
            node.requests += counts[i]

    def take_stages(self) -> tuple:
        """Every node's marks since the last take, as columns (ids, began, ipxe, script, kernel, cloud_init,
        ready; None where absent: bss.apply_boot_stages's arguments), leaving none."""
        cdef list ids = [], out = [[], [], [], [], [], []]
        cdef NodeActivity node
        cdef int i
        for node in self.staged:
            ids.append(node.node_id)
            for i in range(6):
                (<list>out[i]).append(node.at[i] if node.at[i] != 0 else None)
                node.at[i] = 0
            node.staged = False
        self.staged = []
        return (ids, *out)

    def forget(self, *known) -> int:
        """Drop the records of nodes in none of the `known` containers (the index's node ids) that have nothing
        left to write: a deleted node's record would otherwise stay for the worker's life.  Returns how many."""
        cdef list gone = []
        cdef NodeActivity node
        cdef object container
        for node in self.nodes.values():
            if node.requests == 0 and not node.staged:
                for container in known:
                    if node.node_id in container:
                        break
                else:
                    gone.append(node.node_id)
        for node_id in gone:
            del self.nodes[node_id]
        return len(gone)

    def set_marks(self, str node_id, list marks) -> None:
        """Replace the node's marks (a merge of marks that could not be written with newer ones)."""
        cdef NodeActivity node = self._node(node_id)
        cdef int i
        for i in range(6):
            node.at[i] = marks[i] or 0
        if not node.staged:
            node.staged = True
            self.staged.append(node)
