//! Every link preset is detected from its frames and served, the `ldx`
//! build (`%L` opens, `%D` data, `%X` closes) included.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{config, start, Backend, Db, Gate};
use mir2_proto::ids::MsgKind;
use mir2_proto::Dialect;

#[tokio::test]
async fn every_preset_gate_is_served() {
    let db = Db::new(Backend::Sqlite).await.expect("sqlite");
    let server = start(config(&db)).await;
    for dialect in Dialect::ALL {
        let mut gate = Gate::connect(server.local_addr(), dialect).await;
        gate.open(4).await;
        gate.send(4, MsgKind::CmProtocol, 20_020_522, &[]).await;
        let mut raw = Vec::new();
        while !raw.ends_with(b"$") && !raw.ends_with(b"$\0") {
            raw.extend(gate.read_raw().await);
        }
        assert!(raw.starts_with(b"%4/#"), "{dialect}: {raw:?}");
        let nul = dialect.frames().nul_after_reply;
        assert_eq!(raw.ends_with(b"$\0"), nul, "{dialect}: {raw:?}");
        assert_eq!(
            raw.iter().filter(|&&b| b == 0).count(),
            usize::from(nul),
            "{dialect}"
        );
        gate.close(4).await;
    }
    server.shutdown().await;
}
