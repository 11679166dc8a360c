//! What the benchmarks share: a minimal keep-alive HTTP/1.1 client, so the load
//! generator leaves the cores to the server as much as it can (like wrk).

/// One keep-alive HTTP/1.1 connection that sends a POST and reads the answer's status,
/// headers and Content-Length body.
pub struct Connection {
    stream: tokio::io::BufStream<tokio::net::TcpStream>,
    line: String,
}

impl Connection {
    pub async fn open(port: u16) -> Connection {
        let stream = tokio::net::TcpStream::connect(("127.0.0.1", port)).await.unwrap();
        stream.set_nodelay(true).unwrap();
        Connection { stream: tokio::io::BufStream::new(stream), line: String::new() }
    }

    /// POSTs `body` as JSON with `extra_headers` (each line ending in `\r\n`) and returns the status.
    pub async fn post_json(&mut self, path: &str, extra_headers: &str, body: &str) -> u16 {
        use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt};
        let head = format!(
            "POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n{extra_headers}Content-Length: {}\r\n\r\n",
            body.len()
        );
        self.stream.write_all(head.as_bytes()).await.unwrap();
        self.stream.write_all(body.as_bytes()).await.unwrap();
        self.stream.flush().await.unwrap();
        self.line.clear();
        self.stream.read_line(&mut self.line).await.unwrap();
        let status: u16 = self.line.split(' ').nth(1).and_then(|s| s.parse().ok()).expect("status line");
        let mut length = 0usize;
        loop {
            self.line.clear();
            self.stream.read_line(&mut self.line).await.unwrap();
            let header = self.line.trim_end();
            if header.is_empty() {
                break;
            }
            if let Some((name, value)) = header.split_once(':')
                && name.eq_ignore_ascii_case("content-length")
            {
                length = value.trim().parse().unwrap();
            }
        }
        let mut body = vec![0u8; length];
        self.stream.read_exact(&mut body).await.unwrap();
        status
    }
}
