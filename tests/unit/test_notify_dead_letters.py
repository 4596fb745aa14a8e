from services.notify.dead_letters import dead_letter_notice
from shared.messaging.consumer import ATTEMPTS_HEADER, REASON_HEADER


def test_a_service_dead_letter_says_queue_reason_type_and_deliveries():
    notice_id, text = dead_letter_notice(
        "trade_execution", {REASON_HEADER: "ValueError: bad", ATTEMPTS_HEADER: 5},
        message_type="trade.approved", message_id="m-1", body=b"{}")
    assert notice_id == "dead-letter:trade_execution:m-1:5"
    assert "trade_execution" in text and "ValueError: bad" in text
    assert "trade.approved" in text and "Deliveries: 5" in text


def test_a_broker_dead_letter_gives_the_broker_reason_and_an_id_from_the_body():
    first, text = dead_letter_notice("risk_alerts", {"x-first-death-reason": "delivery_limit"},
                                     message_type=None, message_id=None, body=b"abc")
    second, _ = dead_letter_notice("risk_alerts", {}, message_type=None, message_id=None,
                                   body=b"abd")
    assert "broker: delivery_limit" in text
    assert first.startswith("dead-letter:risk_alerts:") and first != second


def test_the_same_message_dead_lettered_again_is_a_new_notice():
    once, _ = dead_letter_notice("q", {ATTEMPTS_HEADER: 1}, message_type=None,
                                 message_id="m", body=b"")
    again, _ = dead_letter_notice("q", {ATTEMPTS_HEADER: 5}, message_type=None,
                                  message_id="m", body=b"")
    assert once != again
