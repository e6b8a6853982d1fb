use crate::config::{SslMode, SslNegotiation};
use crate::tls::TlsConnect;
use crate::{Error, connect_tls};
use bytes::BytesMut;
use postgres_protocol::message::frontend;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

pub async fn cancel_query_raw<S, T>(
    stream: S,
    mode: SslMode,
    negotiation: SslNegotiation,
    tls: T,
    has_hostname: bool,
    process_id: i32,
    secret_key: i32,
) -> Result<(), Error>
where
    S: AsyncRead + AsyncWrite + Unpin,
    T: TlsConnect<S>,
{
    let mut stream = connect_tls::connect_tls(stream, mode, negotiation, tls, has_hostname).await?;

    let mut buf = BytesMut::new();
    frontend::cancel_request(process_id, secret_key, &mut buf);

    stream.write_all(&buf).await.map_err(Error::io)?;
    stream.flush().await.map_err(Error::io)?;
    // todo-api patch: wait for the server to close the connection, which says it has handled
    // the request, as libpq does, instead of closing our side at once. A PgBouncer 1.18 in
    // between drops a cancel request whose client has gone before the request was passed on
    // ("client unexpected eof"), and with several at once it exits ("bad client state: 0",
    // pgbouncer/pgbouncer#801). A reset is a close too; `cancel_query` bounds the wait.
    let mut byte = [0; 1];
    while let Ok(1..) = stream.read(&mut byte).await {}

    Ok(())
}
