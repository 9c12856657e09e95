//! The key extractor agrees with the server's own `COMMAND GETKEYS` on real servers.

use crate::support::Server;

const COMMANDS: &[&str] = &[
    "SET a 1 PX 5",
    "GET a",
    "MSET a 1 b 2 c 3",
    "DEL a b c",
    "RENAME a b",
    "ZUNIONSTORE dst 2 a b WEIGHTS 1 2",
    "ZINTERSTORE dst 3 a b c",
    "EVAL return 2 a b arg",
    "FCALL f 1 a arg",
    "XGROUP CREATE s g $",
    "XREADGROUP GROUP g c COUNT 1 STREAMS s1 s2 0 0",
    "XADD s * f v",
    "LMOVE a b LEFT RIGHT",
    "BITOP AND dst a b",
    "SINTERSTORE dst a b",
    "GEORADIUS g 1 2 3 km STORE dst",
    "SORT a BY w STORE dst",
    "BLPOP a b 0",
    "OBJECT ENCODING a",
    "MEMORY USAGE a",
    "PFMERGE dst a b",
    "COPY a b",
    "LCS a b",
    "SMOVE a b m",
    "HSET h f v",
    "RESTORE k 0 payload",
];

#[test]
fn keys_agree_with_command_getkeys() {
    for v in ["7.0", "7.4"] {
        let s = if v == "7.4" {
            Server::builder(v).modules().start()
        } else {
            Server::start(v)
        };
        let mut c = s.client();
        let mut cmds: Vec<&str> = COMMANDS.to_vec();
        if v == "7.4" {
            cmds.extend(["JSON.SET doc $ 1", "BF.ADD bf x", "TS.ADD ts 1 2"]);
        }
        for cmd in cmds {
            let argv: Vec<&str> = cmd.split(' ').collect();
            let mut req = vec!["COMMAND", "GETKEYS"];
            req.extend(&argv);
            let server: Vec<String> = match c.try_cmd(&req).unwrap().as_array() {
                Some(a) => a.iter().map(|k| k.as_str().unwrap().to_string()).collect(),
                None => vec![],
            };
            let ours: Vec<String> = shake::commands::keys(&argv)
                .unwrap_or_else(|| panic!("{cmd}: not in the table"))
                .iter()
                .map(|k| String::from_utf8_lossy(k).into_owned())
                .collect();
            assert_eq!(ours, server, "{v}: {cmd}");
        }
    }
}
