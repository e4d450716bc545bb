// An annotated fn is an axum handler as it stands.
use axum::extract::Path;
use axum::http::StatusCode;
use axum::routing::post;
use axum::Router;
use locked::{LockError, locked};

struct HttpError(StatusCode, String);

impl From<LockError> for HttpError {
    fn from(e: LockError) -> Self {
        HttpError(StatusCode::LOCKED, e.to_string())
    }
}

impl axum::response::IntoResponse for HttpError {
    fn into_response(self) -> axum::response::Response {
        (self.0, self.1).into_response()
    }
}

#[locked(key = "order:{id}", ttl = "30s", timeout = "5s")]
async fn process_order(Path(id): Path<String>) -> Result<String, HttpError> {
    Ok(format!("order {id} processed"))
}

fn main() {
    let _app: Router = Router::new().route("/order/{id}", post(process_order));
}
