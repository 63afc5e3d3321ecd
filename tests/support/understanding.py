"""A spoken call with something for every speech-understanding result to find: names, a place,
a phone number, an email, money, a date, anger and thanks, and content-safety keywords (the
scripted engine speaks it; tests/e2e/test_understanding_e2e.py and benchmarks/b3u)."""

CALL = (
    "Good morning, thank you for calling Acme Bank. My name is Sarah Connor. "
    "Hi Sarah, this is John Smith from Boston. I am really angry, my card payment failed again. "
    "That is terrible and I am sorry. Can you confirm your phone number? "
    "Sure, it is 555 123 4567 and my email is john.smith@example.com. "
    "I was charged $250 on March 3rd, 2024 for the flight to London. "
    "Damn, the wildfire near my house was a disaster and the flood too. "
    "I will refund the payment today. The account balance will be fine within 5 days. "
    "Great, that is excellent service, thank you so much. Goodbye."
)
