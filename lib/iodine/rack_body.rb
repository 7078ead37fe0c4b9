# frozen_string_literal: true

module Iodine
  module Base
    # How the server runs Rack bodies that execute app code while they are sent (the Rust
    # side calls these). They live in Ruby so that `close` runs from an `ensure`, whatever ends
    # the body: its end, an exception, the client leaving (`ClientGone`), `Thread#kill` or a
    # `throw` (`Timeout`). Rack requires `close` to be called exactly once.
    module RackBody
      # Iterates `body.each`, handing each chunk to `sink` (a Proc from the server).
      def self.each(body, sink)
        body.each(&sink)
      ensure
        RackBody.close(body)
      end

      # Runs a Rack 3 streaming body with the response stream.
      def self.call(body, stream)
        body.call(stream)
      ensure
        RackBody.close(body)
      end

      # Calls `body.close` if it has one; a StandardError it raises is logged, not raised.
      def self.close(body)
        body.close if body.respond_to?(:close)
      rescue StandardError => e
        Base.log(2, "(Iodine) body.close raised #{e.class}: #{e.message}")
      end
    end
  end
end
