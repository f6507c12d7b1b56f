"""core.nodefiles: the one reader of node files (JSON, NDJSON, YAML, CSV) for the CLI and the console."""

from __future__ import annotations

import pytest

from core.nodefiles import NodeFileError, read_node_file, read_nodes

NODES = [{"id": "n1", "role": "Compute", "nid": 1}, {"id": "n2", "role": "Compute", "nid": 2}]


def test_json_ndjson_and_yaml_read_the_same_nodes():
    assert read_nodes('[{"id": "n1", "role": "Compute", "nid": 1}, {"id": "n2", "role": "Compute", "nid": 2}]',
                      "nodes.json") == NODES
    assert read_nodes('{"id": "n1", "role": "Compute", "nid": 1}\n\n{"id": "n2", "role": "Compute", "nid": 2}\n',
                      "nodes.ndjson") == NODES
    assert read_nodes("- id: n1\n  role: Compute\n  nid: 1\n- id: n2\n  role: Compute\n  nid: 2\n", "n.yaml") == NODES


def test_csv_columns_become_location_interfaces_and_boot_parameters():
    text = ("id,type,role,nid,enabled,rack,unit,mac,ip,kernel,cmdline\n"
            "n1,Node,Compute,1,true,r1,4,02:00:00:00:00:01;02:00:00:00:00:02,10.0.0.1,http://k/vmlinuz,quiet\n"
            "\n"
            "n2,,Compute,,no,,,,,,\n")
    first, second = read_nodes(text, "NODES.CSV")
    assert first == {"id": "n1", "type": "Node", "role": "Compute", "nid": 1, "enabled": True,
                     "location": {"rack": "r1", "unit": 4},
                     "networkInterfaces": [{"macAddr": "02:00:00:00:00:01", "ipAddrs": [{"ipAddress": "10.0.0.1"}]},
                                           {"macAddr": "02:00:00:00:00:02"}],
                     "bootParams": {"kernel": "http://k/vmlinuz", "cmdline": "quiet"}}
    assert second == {"id": "n2", "role": "Compute", "enabled": False}


def test_csv_bmc_and_groups_columns_and_the_line_of_each_node():
    text = ("id,BMC,bmc_credential,bmcInsecure,groups\n"
            "# not a comment in CSV: a node named so\n"
            "n1,ipmi://10.0.0.9:623,cred-1,yes,compute; gpu\n"
            "\n"
            "n2,10.0.0.10,,,compute\n")
    nodes, lines = read_node_file(text, "rack12.csv")
    assert nodes[1:] == [{"id": "n1", "bmc": {"address": "ipmi://10.0.0.9:623", "credentialId": "cred-1",
                                              "insecure": True}, "groups": ["compute", "gpu"]},
                         {"id": "n2", "bmc": {"address": "10.0.0.10"}, "groups": ["compute"]}]
    assert lines == [2, 3, 5]
    assert read_node_file('{"id": "a"}\n\n{"id": "b"}\n', "x.ndjson")[1] == [1, 3]
    assert read_node_file('[{"id": "a"}]', "x.json") == ([{"id": "a"}], [])


def test_csv_is_known_by_its_header_without_a_name():
    assert read_nodes("id,nid\nn1,1\n", "-") == [{"id": "n1", "nid": 1}]
    assert read_nodes("- id: a,b\n", "-") == [{"id": "a,b"}]


@pytest.mark.parametrize(("text", "name", "message"), [
    ("id,nid\nn1,one\n", "a.csv", "line 2: nid must be a whole number"),
    ("id\nn1,extra\n", "a.csv", "line 2: 2 cells, but the header names 1"),
    ("", "a.csv", "no header row"),
    ("id,mac,ip\nn1,,10.0.0.1\n", "a.csv", "1 IP addresses for 0 MAC addresses"),
    ("id,bmcCredential\nn1,cred-1\n", "a.csv", "line 2: credentialId without a bmc address"),
    ("id,bmc,bmcInsecure\nn1,10.0.0.1,maybe\n", "a.csv", "line 2: bmcInsecure must be true or false"),
    ('{"id": "n1"}\n{"id": \n', "a.ndjson", "not NDJSON"),
    ("id: n1\n", "a.yaml", "expected a list of nodes"),
    ("[unclosed", "a.json", "neither JSON"),
])
def test_what_cannot_be_read_says_why(text, name, message):
    with pytest.raises(NodeFileError, match=message):
        read_nodes(text, name)
