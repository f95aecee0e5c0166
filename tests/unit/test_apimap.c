/* test_apimap.c - the API answer table: the SMTP reply, action and hint for
 * each documented Graph and Gmail answer, Retry-After, and the cleaning of
 * the API's own words. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>

#include "smtp-tls-proxy/apimap.h"

static apimap_out map(stp_up_kind kind, api_step step, int status, const char *body,
                      const char *rid, const char *retry, bool refreshed) {
  apimap_in in = {.kind = kind,
                  .step = step,
                  .status = status,
                  .body = body,
                  .body_len = body ? strlen(body) : 0,
                  .request_id = rid,
                  .retry_after = retry,
                  .token_refreshed = refreshed,
                  .now_s = 784111777}; /* Sun, 06 Nov 1994 08:49:37 GMT */
  apimap_out out;
  apimap_answer(&in, &out);
  return out;
}

#define GRAPH_ERR(code, msg) "{\"error\":{\"code\":\"" code "\",\"message\":\"" msg "\"}}"

Test(apimap, accepted_is_250_with_the_id) {
  apimap_out o = map(STP_UP_GRAPH, API_STEP_SEND, 202, NULL, "5b1c-77aa", NULL, false);
  cr_assert_eq(o.action, APIMAP_SENT);
  cr_assert_eq(o.code, 250);
  cr_assert_str_eq(o.text, "2.0.0 Ok: accepted by Microsoft Graph, request-id 5b1c-77aa");
  o = map(STP_UP_GMAIL, API_STEP_SEND, 200, "{\"id\":\"18c2f\",\"threadId\":\"18c2f\"}", NULL, NULL,
          false);
  cr_assert_eq(o.action, APIMAP_SENT);
  cr_assert_str_eq(o.text, "2.0.0 Ok: accepted by the Gmail API as id 18c2f");
  o = map(STP_UP_GRAPH, API_STEP_SEND_DRAFT, 202, NULL, NULL, NULL, false);
  cr_assert_eq(o.action, APIMAP_SENT);
  cr_assert_str_eq(o.text, "2.0.0 Ok: accepted by Microsoft Graph");
  /* An intermediate step's 2xx is no 250. */
  o = map(STP_UP_GRAPH, API_STEP_DRAFT, 201, "{\"id\":\"AAMk\"}", NULL, NULL, false);
  cr_assert_eq(o.action, APIMAP_NEXT);
  cr_assert_eq(o.code, 0);
  o = map(STP_UP_GRAPH, API_STEP_UPLOAD, 200, NULL, NULL, NULL, false);
  cr_assert_eq(o.action, APIMAP_NEXT);
}

Test(apimap, unauthorized_refreshes_once) {
  apimap_out o =
      map(STP_UP_GRAPH, API_STEP_SEND, 401,
          GRAPH_ERR("InvalidAuthenticationToken", "Lifetime validation failed"), NULL, NULL, false);
  cr_assert_eq(o.action, APIMAP_REFRESH);
  o = map(STP_UP_GRAPH, API_STEP_SEND, 401,
          GRAPH_ERR("InvalidAuthenticationToken", "Lifetime validation failed"), NULL, NULL, true);
  cr_assert_eq(o.action, APIMAP_DEFER);
  cr_assert_eq(o.code, 454);
  cr_assert_str_eq(o.reason, "token-refused-twice");
  cr_assert(strstr(o.text, "InvalidAuthenticationToken"), "%s", o.text);
}

Test(apimap, throttling_defers_with_retry_after) {
  apimap_out o = map(STP_UP_GRAPH, API_STEP_SEND, 429,
                     GRAPH_ERR("ApplicationThrottled", "Application is over its MailboxConcurrency "
                                                       "limit."),
                     NULL, "7", false);
  cr_assert_eq(o.action, APIMAP_DEFER);
  cr_assert_eq(o.code, 451);
  cr_assert_eq(o.retry_ms, 7000);
  cr_assert_str_eq(o.text, "4.7.0 Throttled by the mail API, try again later (Microsoft Graph 429 "
                           "ApplicationThrottled: Application is over its MailboxConcurrency "
                           "limit.)");
  o = map(STP_UP_GRAPH, API_STEP_UPLOAD, 503, NULL, NULL, "Sun, 06 Nov 1994 08:50:07 GMT", false);
  cr_assert_eq(o.action, APIMAP_DEFER);
  cr_assert_eq(o.retry_ms, 30000, "an HTTP date");
  o = map(STP_UP_GMAIL, API_STEP_SEND, 403,
          "{\"error\":{\"code\":403,\"message\":\"User-rate limit exceeded\",\"errors\":[{"
          "\"message\":\"x\",\"domain\":\"usageLimits\",\"reason\":\"userRateLimitExceeded\"}],"
          "\"status\":\"PERMISSION_DENIED\"}}",
          NULL, NULL, false);
  cr_assert_eq(o.action, APIMAP_DEFER, "Gmail throttles with 403");
  cr_assert_str_eq(o.api_code, "userRateLimitExceeded");
  o = map(STP_UP_GMAIL, API_STEP_SEND, 504, "<html>gateway</html>", NULL, NULL, false);
  cr_assert_eq(o.action, APIMAP_DEFER);
  cr_assert_eq(o.code, 451);
}

Test(apimap, refusals_are_5xx_with_the_code_and_a_hint) {
  apimap_out o = map(STP_UP_GRAPH, API_STEP_SEND, 403,
                     GRAPH_ERR("ErrorSendAsDenied",
                               "The user account which was used to submit this request does not "
                               "have the right to send mail on behalf of the specified sending "
                               "account."),
                     NULL, NULL, false);
  cr_assert_eq(o.action, APIMAP_FAIL);
  cr_assert_eq(o.code, 550);
  cr_assert(!strncmp(o.text,
                     "5.7.60 The mailbox may not send as this From address (Microsoft "
                     "Graph 403 ErrorSendAsDenied: ",
                     90),
            "%s", o.text);
  cr_assert(strstr(o.hint, "Send As"));
  o = map(STP_UP_GRAPH, API_STEP_DRAFT, 403, GRAPH_ERR("ErrorAccessDenied", "Access is denied."),
          NULL, NULL, false);
  cr_assert_eq(o.code, 550);
  cr_assert(strstr(o.text, "Mail.ReadWrite"), "%s", o.text);
  cr_assert_str_eq(o.reason, "permission-mail-readwrite");
  o = map(STP_UP_GRAPH, API_STEP_SEND, 403, GRAPH_ERR("ErrorAccessDenied", "Access is denied."),
          NULL, NULL, false);
  cr_assert_str_eq(o.reason, "permission-mail-send");
  o = map(STP_UP_GRAPH, API_STEP_SEND, 400, GRAPH_ERR("ErrorMessageSizeExceeded", "too big"), NULL,
          NULL, false);
  cr_assert_eq(o.code, 552);
  o = map(STP_UP_GMAIL, API_STEP_SEND, 400,
          "{\"error\":{\"code\":400,\"message\":\"Invalid To header\",\"errors\":[{\"reason\":"
          "\"invalidArgument\"}],\"status\":\"INVALID_ARGUMENT\"}}",
          NULL, NULL, false);
  cr_assert_eq(o.action, APIMAP_FAIL);
  cr_assert_str_eq(o.text, "5.0.0 The mail API refused the message (the Gmail API 400 "
                           "invalidArgument: Invalid To header)");
  o = map(STP_UP_GRAPH, API_STEP_SEND, 302, NULL, NULL, NULL, false);
  cr_assert_eq(o.action, APIMAP_DEFER, "not an answer we know: the device retries");
}

Test(apimap, the_apis_words_are_cleaned_and_bounded) {
  char big[3000];
  snprintf(big, sizeof big, "{\"error\":{\"code\":\"X\",\"message\":\"line\\r\\n250 injected%s\"}}",
           "");
  apimap_out o = map(STP_UP_GRAPH, API_STEP_SEND, 400, big, NULL, NULL, false);
  cr_assert(!strchr(o.text, '\r') && !strchr(o.text, '\n'), "%s", o.text);
  memset(big, 'a', sizeof big);
  memcpy(big, "{\"error\":{\"code\":\"X\",\"message\":\"", 33);
  memcpy(big + sizeof big - 5, "\"}}", 4);
  o = map(STP_UP_GRAPH, API_STEP_SEND, 400, big, NULL, NULL, false);
  cr_assert_lt(strlen(o.text), sizeof o.text);
  o = map(STP_UP_GRAPH, API_STEP_SEND, 202, NULL, "id\r\nX", NULL, false);
  cr_assert_str_eq(o.text, "2.0.0 Ok: accepted by Microsoft Graph, request-id id  X");
  o = map(STP_UP_GRAPH, API_STEP_SEND, 400, "not json", NULL, NULL, false);
  cr_assert_str_eq(o.text, "5.0.0 The mail API refused the message (Microsoft Graph 400)");
}

Test(apimap, retry_after_forms_and_bounds) {
  cr_assert_eq(apimap_retry_after("120", 0), 120000);
  cr_assert_eq(apimap_retry_after(" 3 ", 0), 3000);
  cr_assert_eq(apimap_retry_after("99999999999", 0), APIMAP_RETRY_MAX_MS);
  cr_assert_eq(apimap_retry_after("1.5", 0), 0);
  cr_assert_eq(apimap_retry_after(NULL, 0), 0);
  cr_assert_eq(apimap_retry_after("Sun, 06 Nov 1994 08:49:37 GMT", 784111777 - 10), 10000);
  cr_assert_eq(apimap_retry_after("Sun, 06 Nov 1994 08:49:37 GMT", 784111777 + 10), 0, "past");
  cr_assert_eq(apimap_retry_after("Sun, 06 Foo 1994 08:49:37 GMT", 0), 0);
}

/* Graph is eventually consistent: a 404 on a step after the draft was
 * created (attachments, the upload, send), an expired upload URL, 409,
 * 412 and 423 are temporary (4xx, one more try first), written from
 * Graph's documentation, not from the table. A 404 before any draft
 * exists (the mailbox) stays 550. */
Test(apimap, temporary_answers_are_4xx_with_one_more_try) {
  struct {
    api_step step;
    int status;
    const char *code;
  } cases[] = {
      {API_STEP_ATTACH, 404, "ErrorItemNotFound"},
      {API_STEP_SEND_DRAFT, 404, "ErrorItemNotFound"},
      {API_STEP_UPLOAD, 404, "ErrorItemNotFound"},
      {API_STEP_SEND_DRAFT, 409, "ErrorIrresolvableConflict"},
      {API_STEP_ATTACH, 412, "ErrorIncorrectUpdatePropertyCount"},
      {API_STEP_SEND, 423, "ErrorItemLocked"},
  };
  for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
    char body[256];
    snprintf(body, sizeof body, "{\"error\":{\"code\":\"%s\",\"message\":\"m\"}}", cases[i].code);
    apimap_out o = map(STP_UP_GRAPH, cases[i].step, cases[i].status, body, NULL, NULL, false);
    cr_assert_eq(o.action, APIMAP_DEFER, "case %zu", i);
    cr_assert(o.code >= 400 && o.code < 500, "case %zu: %d", i, o.code);
    cr_assert(o.retry, "case %zu", i);
    cr_assert(strstr(o.text, cases[i].code), "case %zu: %s", i, o.text);
  }
  apimap_out o =
      map(STP_UP_GRAPH, API_STEP_DRAFT, 404,
          GRAPH_ERR("ErrorInvalidUser", "The requested user is invalid."), NULL, NULL, false);
  cr_assert_eq(o.code, 550);
  cr_assert(!o.retry);
  o = map(STP_UP_GRAPH, API_STEP_SEND, 503, NULL, NULL, NULL, false);
  cr_assert(!o.retry, "a 5xx backs the upstream off instead");
}
