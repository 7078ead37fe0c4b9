# frozen_string_literal: true

# A repeating timer whose block (20 ms) is slower than its period (5 ms): runs must not pile
# up in the workers' queue ahead of requests.
RUNS = [0]
Iodine.run_every(5) do
  RUNS[0] += 1
  sleep 0.02
end

run(lambda do |env|
  case env["PATH_INFO"]
  when "/stats" then [200, {}, ["#{RUNS[0]} #{Iodine::Base.timer_ticks_skipped}"]]
  else [200, {}, ["ok"]]
  end
end)
