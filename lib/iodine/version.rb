# frozen_string_literal: true

module Iodine
  # The C gem release whose API this gem implements.
  VERSION = "0.7.59"
end
