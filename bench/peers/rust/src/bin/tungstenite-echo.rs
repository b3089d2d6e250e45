//! Echo server on tokio-tungstenite, with the frame and message limits
//! raised to [`tern_peers::MAX_MESSAGE`].

use futures_util::{SinkExt, StreamExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;

async fn echo(stream: TcpStream) {
    let _ = stream.set_nodelay(true);
    let config = WebSocketConfig::default()
        .max_message_size(Some(tern_peers::MAX_MESSAGE))
        .max_frame_size(Some(tern_peers::MAX_MESSAGE));
    let Ok(mut ws) = tokio_tungstenite::accept_async_with_config(stream, Some(config)).await else {
        return;
    };
    while let Some(Ok(message)) = ws.next().await {
        // Pings are answered and closes completed by tungstenite itself.
        if !(message.is_text() || message.is_binary()) {
            continue;
        }
        if ws.send(message).await.is_err() {
            return;
        }
    }
}

fn main() -> std::io::Result<()> {
    let options = tern_peers::options("tungstenite-echo");
    tern_peers::runtime(options.threads)?.block_on(async move {
        let listener = tern_peers::listener(options.addr)?;
        println!("listening on ws://{}", listener.local_addr()?);
        loop {
            let (stream, _) = listener.accept().await?;
            tokio::spawn(echo(stream));
        }
    })
}
