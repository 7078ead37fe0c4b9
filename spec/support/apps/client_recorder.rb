# frozen_string_literal: true

# Shared by the iodine client scripts of spec/integration/clients_spec.rb (and the attach_fd
# ones of raw_connections_spec.rb): a handler that records what happens to its connection,
# and the way a script ends (all handlers closed, or a deadline) and reports (one JSON line).

require "iodine"
require "json"

Iodine.threads = 2
Iodine.workers = 1

# Records its callbacks. `on_open`/`on_message` blocks (given the client, and the data) say
# what to do besides recording.
class Recorder
  LOCK = Mutex.new
  ALL = []
  STARTED = Process.clock_gettime(Process::CLOCK_MONOTONIC)

  attr_reader :name, :events, :messages

  def self.elapsed
    (Process.clock_gettime(Process::CLOCK_MONOTONIC) - STARTED).round(3)
  end

  def initialize(name, on_open: nil, on_message: nil)
    @name = name
    @events = []
    @messages = []
    @on_open = on_open
    @on_message = on_message
    @closes = 0
    LOCK.synchronize { ALL << self }
  end

  def note(line)
    LOCK.synchronize { @events << line }
  end

  def on_open(client)
    note("open #{client.protocol.inspect} env=#{client.env.inspect}")
    @opened_at = Recorder.elapsed
    @on_open&.call(client)
  end

  def on_message(client, data)
    LOCK.synchronize { @messages << data }
    @on_message&.call(client, data)
  end

  def on_drained(_client)
    note("drained") unless @events.last == "drained"
  end

  def on_close(_client)
    note("close")
    LOCK.synchronize { @closes += 1 }
    @closed_at = Recorder.elapsed
  end

  def closed?
    @closes.positive?
  end

  # What the spec gets: the events (repeated drains folded), the messages (as Strings when
  # they are valid UTF-8, else as {"binary" => hex}), their encodings, and when it
  # opened/closed (seconds since the script started).
  def report
    {
      "events" => @events, "opened_at" => @opened_at, "closed_at" => @closed_at,
      "encodings" => @messages.map { |m| m.encoding.to_s }.uniq,
      "messages" => @messages.map do |m|
        utf8 = m.dup.force_encoding(Encoding::UTF_8)
        utf8.valid_encoding? ? utf8 : { "binary" => m.unpack1("H*") }
      end
    }
  end

  # Stops iodine once `done` (default: every recorder closed) holds, or after `seconds`.
  def self.stop_when(seconds, &done)
    done ||= -> { LOCK.synchronize { ALL.all?(&:closed?) } }
    Iodine.run_every(20) { Iodine.stop if done.call }
    Iodine.run_after((seconds * 1000).to_i) do
      warn "deadline: stopping with recorders still open"
      Iodine.stop
    end
  end
end
