//! `payctl redrive`: moves the payments waiting in the retry queue's dead-letter queue
//! back to the retry queue, once whatever made them fail is fixed.
//!
//! One message at a time: receive it from the dead-letter queue, send its body (and
//! message attributes) to the retry queue, and only then delete it from the dead-letter
//! queue. A kill between the send and the delete leaves the message in both queues: the
//! processor handles it twice, which its idempotent processing absorbs (the ledger
//! insert and the conditional status update). No order of steps loses a message. SQS's
//! own `StartMessageMoveTask` would do the same server-side, but it is not available on
//! every endpoint payctl is pointed at; this loop needs only receive, send and delete.
//!
//! The run ends when a receive finds nothing; messages that another consumer holds
//! invisible at that moment are left for a later run.

use crate::error::{Result, aws};

/// How long a received message stays invisible to others while it is moved.
const MOVE_VISIBILITY_SECS: i32 = 60;
/// Long poll of each receive: long enough to see a message SQS has just made visible.
const RECEIVE_WAIT_SECS: i32 = 2;

/// Moves every visible message of `dlq` to `queue`; the number moved.
pub async fn move_all(sqs: &aws_sdk_sqs::Client, dlq: &str, queue: &str) -> Result<usize> {
    let mut moved = 0;
    loop {
        crate::interrupt::check("the dead-letter queue to be moved")?;
        let out = sqs
            .receive_message()
            .queue_url(dlq)
            .max_number_of_messages(1)
            .visibility_timeout(MOVE_VISIBILITY_SECS)
            .wait_time_seconds(RECEIVE_WAIT_SECS)
            .message_attribute_names("All")
            .send()
            .await
            .map_err(aws("ReceiveMessage", dlq))?;
        let Some(message) = out.messages().first() else {
            return Ok(moved);
        };
        let body = message.body().unwrap_or_default();
        sqs.send_message()
            .queue_url(queue)
            .message_body(body)
            .set_message_attributes(message.message_attributes().cloned())
            .send()
            .await
            .map_err(aws("SendMessage", queue))?;
        if let Some(receipt) = message.receipt_handle() {
            sqs.delete_message()
                .queue_url(dlq)
                .receipt_handle(receipt)
                .send()
                .await
                .map_err(aws("DeleteMessage", dlq))?;
        }
        moved += 1;
        tracing::info!(
            "moved message {} back to the retry queue",
            message.message_id().unwrap_or("?")
        );
    }
}
