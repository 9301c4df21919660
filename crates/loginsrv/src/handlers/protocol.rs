//! CM_PROTOCOL: the client announces its build date in `recog`.

use mir2_proto::ids::MsgKind;
use mir2_proto::packet::Packet;

use crate::client::{Client, Reply};
use crate::reject::reject;

/// A version handshake.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Protocol {
    /// The client build date (yyyymmdd).
    pub version: i32,
}

impl Protocol {
    /// Every CM_PROTOCOL is readable: the version is the header's recog.
    pub fn parse(packet: &Packet) -> Protocol {
        Protocol {
            version: packet.header.recog,
        }
    }

    /// Accept builds from `min_client_version` on; an older one leaves the
    /// client refused until a newer CM_PROTOCOL (as does sending none at all).
    pub fn apply(self, client: &mut Client) -> Reply {
        let min = client.server.config.load().min_client_version;
        if self.version < min {
            reject(
                "client_too_old",
                format_args!(
                    "{}: build {} < min_client_version {min}",
                    client.who(),
                    self.version
                ),
            );
            client.version_passed = false;
            return Reply::code(MsgKind::SmCertificationFail, 0);
        }
        client.version_passed = true;
        Reply::code(MsgKind::SmCertificationSuccess, 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::handlers::test_support::packet;

    #[test]
    fn version_is_the_recog() {
        let p = packet(MsgKind::CmProtocol, 20_020_522, &[]);
        assert_eq!(
            Protocol::parse(&p),
            Protocol {
                version: 20_020_522
            }
        );
    }
}
