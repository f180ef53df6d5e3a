//! MQTT reason codes as numbers and names. The names are MQTT 5.0's (section 2.4), in snake
//! case, and become error kinds (`mqtt_not_authorized`); MQTT 3.1.1's CONNACK return codes map
//! to the 5.0 codes that mean the same, so a refused login reads alike in both versions.

use rumqttc::v5::mqttbytes::v5;

/// Codes below this are successes; from it on, failures.
pub const FAILURE: u8 = 0x80;

/// The name of an MQTT 5.0 reason code; success codes are named for what they grant.
pub fn name(code: u8) -> &'static str {
    match code {
        0x00 => "success",
        0x01 => "granted_qos_1",
        0x02 => "granted_qos_2",
        0x04 => "disconnect_with_will_message",
        0x10 => "no_matching_subscribers",
        0x11 => "no_subscription_existed",
        0x18 => "continue_authentication",
        0x19 => "re_authenticate",
        0x80 => "unspecified_error",
        0x81 => "malformed_packet",
        0x82 => "protocol_error",
        0x83 => "implementation_specific_error",
        0x84 => "unsupported_protocol_version",
        0x85 => "client_identifier_not_valid",
        0x86 => "bad_user_name_or_password",
        0x87 => "not_authorized",
        0x88 => "server_unavailable",
        0x89 => "server_busy",
        0x8A => "banned",
        0x8B => "server_shutting_down",
        0x8C => "bad_authentication_method",
        0x8D => "keep_alive_timeout",
        0x8E => "session_taken_over",
        0x8F => "topic_filter_invalid",
        0x90 => "topic_name_invalid",
        0x91 => "packet_identifier_in_use",
        0x92 => "packet_identifier_not_found",
        0x93 => "receive_maximum_exceeded",
        0x94 => "topic_alias_invalid",
        0x95 => "packet_too_large",
        0x96 => "message_rate_too_high",
        0x97 => "quota_exceeded",
        0x98 => "administrative_action",
        0x99 => "payload_format_invalid",
        0x9A => "retain_not_supported",
        0x9B => "qos_not_supported",
        0x9C => "use_another_server",
        0x9D => "server_moved",
        0x9E => "shared_subscriptions_not_supported",
        0x9F => "connection_rate_exceeded",
        0xA0 => "maximum_connect_time",
        0xA1 => "subscription_identifiers_not_supported",
        0xA2 => "wildcard_subscriptions_not_supported",
        _ => "unknown_reason_code",
    }
}

/// The MQTT 5.0 reason code of a 3.1.1 CONNACK return code.
pub fn connack_v311(code: u8) -> u8 {
    match code {
        0 => 0x00,
        1 => 0x84,
        2 => 0x85,
        3 => 0x88,
        4 => 0x86,
        5 => 0x87,
        _ => 0x80,
    }
}

pub(super) fn connack_v5(code: v5::ConnectReturnCode) -> u8 {
    use v5::ConnectReturnCode::*;
    match code {
        Success => 0x00,
        // rumqttc's 3.1.1 names, never read from a 5.0 CONNACK.
        RefusedProtocolVersion => 0x84,
        BadClientId => 0x85,
        ServiceUnavailable => 0x88,
        UnspecifiedError => 0x80,
        MalformedPacket => 0x81,
        ProtocolError => 0x82,
        ImplementationSpecificError => 0x83,
        UnsupportedProtocolVersion => 0x84,
        ClientIdentifierNotValid => 0x85,
        BadUserNamePassword => 0x86,
        NotAuthorized => 0x87,
        ServerUnavailable => 0x88,
        ServerBusy => 0x89,
        Banned => 0x8A,
        BadAuthenticationMethod => 0x8C,
        TopicNameInvalid => 0x90,
        PacketTooLarge => 0x95,
        QuotaExceeded => 0x97,
        PayloadFormatInvalid => 0x99,
        RetainNotSupported => 0x9A,
        QoSNotSupported => 0x9B,
        UseAnotherServer => 0x9C,
        ServerMoved => 0x9D,
        ConnectionRateExceeded => 0x9F,
    }
}

pub(super) fn puback_v5(reason: v5::PubAckReason) -> u8 {
    use v5::PubAckReason::*;
    match reason {
        Success => 0x00,
        NoMatchingSubscribers => 0x10,
        UnspecifiedError => 0x80,
        ImplementationSpecificError => 0x83,
        NotAuthorized => 0x87,
        TopicNameInvalid => 0x90,
        PacketIdentifierInUse => 0x91,
        QuotaExceeded => 0x97,
        PayloadFormatInvalid => 0x99,
    }
}

pub(super) fn pubrec_v5(reason: v5::PubRecReason) -> u8 {
    use v5::PubRecReason::*;
    match reason {
        Success => 0x00,
        NoMatchingSubscribers => 0x10,
        UnspecifiedError => 0x80,
        ImplementationSpecificError => 0x83,
        NotAuthorized => 0x87,
        TopicNameInvalid => 0x90,
        PacketIdentifierInUse => 0x91,
        QuotaExceeded => 0x97,
        PayloadFormatInvalid => 0x99,
    }
}

pub(super) fn suback_v5(code: v5::SubscribeReasonCode) -> u8 {
    use v5::SubscribeReasonCode::*;
    match code {
        Success(qos) => qos as u8,
        Failure | Unspecified => 0x80,
        ImplementationSpecific => 0x83,
        NotAuthorized => 0x87,
        TopicFilterInvalid => 0x8F,
        PkidInUse => 0x91,
        QuotaExceeded => 0x97,
        SharedSubscriptionsNotSupported => 0x9E,
        SubscriptionIdNotSupported => 0xA1,
        WildcardSubscriptionsNotSupported => 0xA2,
    }
}

pub(super) fn unsuback_v5(reason: v5::UnsubAckReason) -> u8 {
    use v5::UnsubAckReason::*;
    match reason {
        Success => 0x00,
        NoSubscriptionExisted => 0x11,
        UnspecifiedError => 0x80,
        ImplementationSpecificError => 0x83,
        NotAuthorized => 0x87,
        TopicFilterInvalid => 0x8F,
        PacketIdentifierInUse => 0x91,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_3_1_1_return_codes() {
        assert_eq!(name(0x87), "not_authorized");
        assert_eq!(name(0x10), "no_matching_subscribers");
        assert_eq!(name(0x42), "unknown_reason_code");
        assert_eq!(name(connack_v311(4)), "bad_user_name_or_password");
        assert_eq!(name(connack_v311(5)), "not_authorized");
        assert_eq!(name(connack_v311(2)), "client_identifier_not_valid");
        assert_eq!(connack_v311(0), 0);
    }
}
