//! Domain events to protobuf frames.

use feige_core::model::Event;
use feige_proto::v1::{self, server_frame::Payload};
use prost::Message as _;

/// The protobuf form of a timeline event.
pub fn event(e: &Event) -> v1::Event {
    v1::Event {
        seq: e.seq,
        kind: e.kind.clone(),
        conversation_id: e.conversation_id.to_string(),
        conv_seq: e.conv_seq,
        msg_id: e.msg_id.clone(),
        sender_id: e.sender_id.map(|u| u.0),
        r#type: e.msg_type.clone(),
        body_json: e.body.as_ref().map(|b| b.to_string()),
        created_at: e.created_at,
        extra_json: serde_json::Value::Object(e.extra.clone()).to_string(),
    }
}

/// Encodes one server frame.
pub fn encode(payload: Payload) -> Vec<u8> {
    v1::ServerFrame { payload: Some(payload) }.encode_to_vec()
}

#[cfg(test)]
mod tests {
    use super::*;
    use feige_core::{ConversationId, UserId};

    #[test]
    fn events_round_trip_through_protobuf() {
        let mut extra = serde_json::Map::new();
        extra.insert("client_msg_id".into(), "c1".into());
        let e = Event {
            seq: 7,
            kind: "message".into(),
            conversation_id: ConversationId::direct(UserId(1), UserId(2)),
            conv_seq: Some(3),
            msg_id: Some("m".into()),
            sender_id: Some(UserId(1)),
            msg_type: Some("text".into()),
            body: Some("héllo".into()),
            created_at: 1234,
            extra,
        };
        let bytes = encode(Payload::Event(event(&e)));
        let back = v1::ServerFrame::decode(bytes.as_slice()).expect("decode");
        let Some(Payload::Event(pe)) = back.payload else { panic!("not an event") };
        assert_eq!(pe.seq, 7);
        assert_eq!(pe.conversation_id, "p1_2");
        assert_eq!(pe.body_json.as_deref(), Some("\"héllo\""));
        assert_eq!(pe.extra_json, r#"{"client_msg_id":"c1"}"#);
    }
}
