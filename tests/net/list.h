/* list.h - every net test, by name (file: test_<group>.c). */
#define NET_TESTS(X)                                                                               \
  X(stream_tls_echo_both_ways)                                                                     \
  X(stream_tls_large_echo_with_backpressure)                                                       \
  X(stream_tls_wrong_name_refused)                                                                 \
  X(stream_tls_untrusted_refused)                                                                  \
  X(dialer_connects_by_name_and_number)                                                            \
  X(dialer_refused_tries_next_address)                                                             \
  X(dialer_all_refused_reports_connect)                                                            \
  X(dialer_dns_failure_without_network)                                                            \
  X(dialer_total_timeout)                                                                          \
  X(dialer_attempt_timeout_moves_on)                                                               \
  X(dialer_cancel_calls_nothing)                                                                   \
  X(http_content_length)                                                                           \
  X(http_chunked)                                                                                  \
  X(http_response_over_bound_refused)                                                              \
  X(http_streamed_body_with_pauses)                                                                \
  X(http_streamed_body_backpressure)                                                               \
  X(http_body_source_failure)                                                                      \
  X(http_tls_verified)                                                                             \
  X(http_tls_wrong_name_fails)                                                                     \
  X(http_keep_alive_reuses_one_connection)                                                         \
  X(http_stale_connection_retried_when_idempotent)                                                 \
  X(http_stale_connection_post_not_retried)                                                        \
  X(http_close_delimited_not_reused)                                                               \
  X(http_immediate_errors_from_the_loop)                                                           \
  X(http_connect_refused)                                                                          \
  X(http_total_timeout)                                                                            \
  X(http_stall_timeout)                                                                            \
  X(http_cancel_calls_nothing)                                                                     \
  X(http_preconnect_parks_for_the_next_call)                                                       \
  X(pool_give_take_reuses_connection)                                                              \
  X(pool_reset_before_reuse)                                                                       \
  X(pool_bound_and_upstream_close)                                                                 \
  X(pool_idle_timeout_and_close)                                                                   \
  X(apibody_segments_and_base64_runs)                                                              \
  X(apibody_upload_chunks_from_one_pass)                                                           \
  X(apibody_short_file_fails_and_free_is_quiet)
