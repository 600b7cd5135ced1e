//! The default peer policy over the wire: private, loopback and metadata peers get 403.

use turn::wire::Class;

use crate::common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn default_config_refuses_private_and_loopback_peers() {
    let s = start(test_settings()).await;
    let mut c = Client::udp(s.udp(), "u", "p").await;
    c.allocate_ok().await;
    for p in [
        "127.0.0.1:9",
        "10.0.0.1:9",
        "192.168.1.1:9",
        "169.254.169.254:80",
        "[::1]:9",
        "[::ffff:127.0.0.1]:9",
    ] {
        let p = p.parse().unwrap();
        assert_eq!(c.permit(p).await.code(), Some(403), "CreatePermission {p}");
        assert_eq!(
            c.bind_channel(0x4000, p).await.code(),
            Some(403),
            "ChannelBind {p}"
        );
    }
    assert_eq!(
        c.permit("8.8.8.8:9".parse().unwrap()).await.class,
        Class::Success
    );
    s.stop().await;
}
